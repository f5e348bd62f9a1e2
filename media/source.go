package media

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/backoff"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
	"go.uber.org/zap"
)

// ErrSourceEnded is returned by Source.Run when a non-looping file reached its end.
var ErrSourceEnded = errors.New("video source ended")

// errStalled ends a pipeline run that delivered no frame for the stall timeout.
var errStalled = errors.New("no frame from the source")

// SourceOptions configure a capture pipeline.
type SourceOptions struct {
	Plan Plan
	// Loop plays a file again when it ends.
	Loop bool
	Hub  *Hub
	Log  *zap.Logger
	// StallTimeout restarts the pipeline when no frame arrived for this long (0: 5 s).
	StallTimeout time.Duration
	// MaxBackoff bounds the wait between restarts (0: 30 s).
	MaxBackoff time.Duration
}

// Frame is a small grey picture for motion detection: GRAY8, Height rows of Stride bytes
// (GStreamer pads each row to a multiple of 4 bytes).
type Frame struct {
	Data          []byte
	Width, Height int
	Stride        int
	PTS           time.Duration // on the source's continuous timeline
	Wall          time.Time
}

// Source runs the capture pipeline, supervises it (a failed, ended or stalled pipeline is
// restarted with back-off, without a process restart), and publishes its access units to
// the Hub on one continuous timeline across restarts. It also delivers analysis frames and
// exposes the encoder's run-time controls.
type Source struct {
	opts   SourceOptions
	log    *zap.Logger
	desc   string
	frames chan Frame

	mu        sync.Mutex
	pipeline  *gst.Pipeline
	base      time.Duration // timeline position where the current pipeline run started
	end       time.Duration // timeline position just after the newest unit
	first     time.Duration // PTS of the current run's first unit, gst.NoTime before it
	lastFrame time.Time     // wall time of the newest access unit
	runStart  time.Time     // when the current run started: the stall watch's origin before its first unit
	lastKey   time.Time     // wall time of the newest keyframe
	lastForce time.Time     // wall time of the newest keyframe request
	sps       []byte
	count     uint64
	restarts  int
	bitrate   int // current encoder bitrate, kbit/s
	fps       int // current encoded frame rate
}

// NewSource checks the plan and returns a Source; nothing runs until Run.
func NewSource(opts SourceOptions) (*Source, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	desc, err := opts.Plan.Description()
	if err != nil {
		return nil, err
	}
	return &Source{
		opts: opts, log: opts.Log, desc: desc, frames: make(chan Frame, 2),
		bitrate: opts.Plan.Encoder.BitrateKbps, fps: opts.Plan.Source.Framerate,
	}, nil
}

// Description returns the pipeline description with URL passwords redacted.
func (s *Source) Description() string { return config.RedactURL(s.desc) }

// Frames delivers analysis frames (when the plan has analysis on). When the reader falls
// behind, the oldest frame is dropped: motion wants the newest picture.
func (s *Source) Frames() <-chan Frame { return s.frames }

// Run captures until ctx ends (nil), a non-looping file ends (ErrSourceEnded) or the
// pipeline cannot be built at all (missing element, bad description). Failures while
// running are logged and the pipeline restarts with jittered exponential back-off.
func (s *Source) Run(ctx context.Context) error {
	failures := 0
	for {
		started := time.Now()
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var setup *setupError
		switch {
		case errors.As(err, &setup):
			return setup.err
		case errors.Is(err, gst.ErrEOS) && s.opts.Plan.Source.Kind == config.SourceFile:
			if !s.opts.Loop {
				return ErrSourceEnded
			}
			s.log.Info("video file ended; playing it again")
			s.opts.Hub.Discontinuity()
			continue
		}
		if time.Since(started) > 2*s.opts.MaxBackoff {
			failures = 0 // it ran well for a while: start the back-off again
		}
		failures++
		wait := backoff.Delay(time.Second, s.opts.MaxBackoff, failures)
		s.mu.Lock()
		s.restarts++
		n := s.restarts
		s.mu.Unlock()
		s.log.Warn("video pipeline stopped; restarting", zap.String("reason", config.RedactURL(errString(err))),
			zap.Duration("in", wait), zap.Int("restarts", n))
		s.opts.Hub.Discontinuity()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ended"
	}
	return err.Error()
}

// setupError marks failures that a restart cannot fix.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }

func (s *Source) runOnce(ctx context.Context) error {
	p, err := gst.Parse(s.desc, gst.Options{Name: "capture", Log: s.log, Redact: config.RedactURL})
	if err != nil {
		return &setupError{err}
	}
	if err := p.OnSample(VideoSink, s.onSample); err != nil {
		return &setupError{err}
	}
	if s.opts.Plan.AnalyseMain() {
		if err := p.OnSample(AnalysisSink, s.onAnalysis); err != nil {
			return &setupError{err}
		}
	}
	s.mu.Lock()
	s.pipeline = p
	s.base = s.end
	s.first = gst.NoTime
	s.runStart = time.Now()
	s.applyControlsLocked()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.pipeline = nil
		s.mu.Unlock()
	}()

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go s.watch(runCtx, cancel)
	err = p.Run(runCtx)
	if cause := context.Cause(runCtx); errors.Is(cause, errStalled) {
		return fmt.Errorf("%w for %s", errStalled, s.opts.StallTimeout)
	}
	if err != nil {
		return err
	}
	return gst.ErrEOS
}

// watch ends the run when no frame arrived for the stall timeout (twice that for the
// first frame: cameras and RTSP sessions take a moment to start).
func (s *Source) watch(ctx context.Context, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(min(s.opts.StallTimeout/4, 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		limit, since := s.opts.StallTimeout, s.lastFrame
		if s.first == gst.NoTime {
			limit, since = 2*limit, s.runStart
		}
		stalled := time.Since(since) > limit
		s.mu.Unlock()
		if stalled {
			cancel(errStalled)
			return
		}
	}
}

// onSample runs on the GStreamer streaming thread: it must not block.
func (s *Source) onSample(smp gst.Sample) {
	now := time.Now()
	s.mu.Lock()
	if s.first == gst.NoTime {
		s.first = smp.PTS
	}
	au := AccessUnit{
		Data:     smp.Data,
		PTS:      s.rebase(smp.PTS),
		DTS:      s.rebase(smp.DTS),
		Duration: max(smp.Duration, 0),
		Keyframe: h264.IsKeyframe(smp.Data),
		Wall:     now,
	}
	if smp.DTS == gst.NoTime {
		au.DTS = au.PTS
	}
	s.end = max(s.end, au.PTS+au.Duration)
	s.count++
	s.lastFrame = now
	if au.Keyframe {
		s.lastKey = now
	}
	s.noteParamSets(au)
	keepGOP := s.gopOverdueLocked(now)
	s.mu.Unlock()
	s.opts.Hub.Publish(au)
	if keepGOP {
		go func() { _ = s.ForceKeyframe() }()
	}
}

// gopOverdueLocked reports whether the encoder went past the configured GOP, which happens
// when the frame rate is lowered at run time (key-int-max counts frames, and x264 cannot
// change it while playing).
func (s *Source) gopOverdueLocked(now time.Time) bool {
	if s.opts.Plan.Encode == EncodePassthrough || s.lastKey.IsZero() || s.fps >= s.opts.Plan.Source.Framerate {
		return false
	}
	return now.Sub(s.lastKey) >= s.opts.Plan.Encoder.GOP && now.Sub(s.lastForce) >= s.opts.Plan.Encoder.GOP/2
}

func (s *Source) onAnalysis(smp gst.Sample) {
	s.mu.Lock()
	pts := s.rebase(smp.PTS)
	s.mu.Unlock()
	f := Frame{Data: smp.Data, Width: smp.Width, Height: smp.Height, PTS: pts, Wall: time.Now()}
	if f.Height > 0 {
		f.Stride = len(f.Data) / f.Height
	}
	for {
		select {
		case s.frames <- f:
			return
		default:
		}
		select { // full: drop the oldest, keep the newest
		case <-s.frames:
		default:
		}
	}
}

// rebase maps a pipeline timestamp onto the continuous timeline.
func (s *Source) rebase(t time.Duration) time.Duration {
	if t == gst.NoTime || s.first == gst.NoTime {
		return s.end
	}
	return s.base + t - s.first
}

// noteParamSets logs the stream's format whenever its SPS changes.
func (s *Source) noteParamSets(au AccessUnit) {
	if !au.Keyframe {
		return
	}
	sps, _ := h264.ParamSets(au.Data)
	if sps == nil {
		s.log.Warn("keyframe without in-band SPS/PPS: viewers joining now cannot decode it")
		return
	}
	if string(sps) == string(s.sps) {
		return
	}
	s.sps = append(s.sps[:0], sps...)
	info, err := h264.ParseSPS(sps)
	if err != nil {
		s.log.Warn("unreadable SPS", zap.Error(err))
		return
	}
	s.log.Info("video stream", zap.String("size", fmt.Sprintf("%dx%d", info.Width, info.Height)),
		zap.String("codec", info.Codec()), zap.Float64("fps", info.FrameRate), zap.String("encoder", s.opts.Plan.Encode))
}

// SPS returns the newest sequence parameter set seen (nil before the first keyframe).
func (s *Source) SPS() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.sps...)
}

// Frames published, and pipeline restarts so far.
func (s *Source) Stats() (frames uint64, restarts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.restarts
}

// LastFrame returns when the newest access unit arrived (zero before the first).
func (s *Source) LastFrame() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == 0 {
		return time.Time{}
	}
	return s.lastFrame
}

// FrameCount returns how many access units the source has published.
func (s *Source) FrameCount() uint64 {
	f, _ := s.Stats()
	return f
}
