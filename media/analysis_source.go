package media

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/backoff"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/openh264"
	"go.uber.org/zap"
)

// Kinds of analysis source.
const (
	analysisRTSP   = "rtsp"
	analysisFile   = "file"
	analysisDevice = "device"
	// analysisUnits: H.264 access units from a Hub (AnalysisSourceOptions.Units).
	analysisUnits = "units"
)

// analysisSourceKind tells what an analysis source URI names: rtsp(s):// URLs, V4L2 devices
// (/dev/… or v4l2:///dev/…), and files (a path or file://).
func analysisSourceKind(uri string) string {
	switch {
	case strings.HasPrefix(uri, "rtsp://") || strings.HasPrefix(uri, "rtsps://"):
		return analysisRTSP
	case strings.HasPrefix(uri, "/dev/") || strings.HasPrefix(uri, "v4l2://"):
		return analysisDevice
	}
	return analysisFile
}

// AnalysisState is the health of a separate analysis source.
type AnalysisState int

// Analysis source states.
const (
	// AnalysisStarting: no frame yet, and the stall timeout has not passed since Run began.
	AnalysisStarting AnalysisState = iota
	// AnalysisUp: frames arrive.
	AnalysisUp
	// AnalysisDown: no frame for the stall timeout (the source is unreachable, ended, or
	// delivers nothing); the pipeline restarts with back-off meanwhile.
	AnalysisDown
)

func (s AnalysisState) String() string {
	switch s {
	case AnalysisUp:
		return "up"
	case AnalysisDown:
		return "down"
	}
	return "starting"
}

// AnalysisSourceOptions configure a separate analysis pipeline: a camera's low-resolution
// substream (as NVRs analyse), a file or a V4L2 device, decoded and scaled to small GRAY8
// frames at the analysis rate.
type AnalysisSourceOptions struct {
	// URI is an rtsp:// or rtsps:// URL (H.264), a video file (path or file://, played in
	// real time and looping) or a V4L2 device delivering raw video (/dev/videoN or
	// v4l2:///dev/videoN).
	URI string
	// Width, Height and Framerate are the analysis frames' size and highest rate.
	Width, Height, Framerate int
	// Decoder decodes H.264 (ResolveDecoder); the zero value is avdec_h264.
	Decoder Decoder
	// Transport is the RTSP lower transport: tcp (default), udp or auto.
	Transport string
	// StallTimeout: no frame for this long marks the source down and restarts its pipeline
	// (0: 5 s).
	StallTimeout time.Duration
	// MaxBackoff bounds the wait between restarts (0: 30 s).
	MaxBackoff time.Duration
	// Units, when set, feeds the source with H.264 access units from a Hub instead of a
	// GStreamer reader (URI then only names the source in logs and status): a camera's
	// substream read by the Go RTSP client, or the main stream's own Hub. They are decoded
	// in process with libopenh264 when the decoder is openh264 and the library is
	// installed (no GStreamer at all), else by appsrc ! decoder ! … ! appsink.
	Units *AnalysisUnits
	// KeyframesOnly decodes only the keyframes of Units (one analysis frame per GOP, at a
	// fraction of the decoding cost; media.analysis.keyframes_only on the main stream).
	KeyframesOnly bool
	Log           *zap.Logger
}

// AnalysisHealth is an analysis source's state and counters.
type AnalysisHealth struct {
	State     AnalysisState
	Frames    uint64    // analysis frames delivered
	Restarts  int       // pipeline restarts
	LastFrame time.Time // zero before the first
	// Reason is why the newest run stopped (empty while it runs well).
	Reason string
}

// AnalysisSource runs a small pipeline of its own for motion analysis, apart from the
// capture pipeline: it restarts on its own (with back-off) without touching the main
// stream, and reports whether frames arrive (Health, Changed).
type AnalysisSource struct {
	opts AnalysisSourceOptions
	log  *zap.Logger
	desc string
	kind string
	// inProcess: Hub-fed and decoded with libopenh264 in process (no pipeline).
	inProcess bool
	frames    chan Frame
	changed   chan struct{}

	mu        sync.Mutex
	state     AnalysisState
	count     uint64
	restarts  int
	lastFrame time.Time
	runStart  time.Time // when the current run started
	runFrames uint64    // frames of the current run
	first     time.Duration
	base      time.Duration // timeline position where the current run started
	end       time.Duration // timeline position just after the newest frame
	reason    string
}

// NewAnalysisSource checks the options and builds the pipeline description; nothing runs
// until Run.
func NewAnalysisSource(opts AnalysisSourceOptions) (*AnalysisSource, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Width <= 0 || opts.Height <= 0 || opts.Framerate <= 0 {
		return nil, fmt.Errorf("analysis source: frame size %dx%d at %d fps: all must be positive", opts.Width, opts.Height, opts.Framerate)
	}
	s := &AnalysisSource{opts: opts, log: opts.Log, kind: analysisSourceKind(opts.URI), frames: make(chan Frame, 2), changed: make(chan struct{}, 1)}
	if opts.Units != nil {
		if opts.Units.Hub == nil {
			return nil, errors.New("analysis source: access units without a Hub to read them from")
		}
		s.kind = analysisUnits
		s.inProcess = unitsInProcess(opts.Decoder)
	}
	if !s.inProcess && opts.Decoder.Element == "openh264dec" && !gst.HasElement("openh264dec") {
		// openh264 was chosen for libopenh264 in process; a pipeline needs the element.
		s.opts.Decoder = Decoder{Kind: DecodeSoftware, Element: "avdec_h264",
			Reason: opts.Decoder.Reason + "; avdec_h264, as GStreamer's openh264dec is not installed (gstreamer1.0-plugins-bad)"}
	}
	desc, err := s.description()
	if err != nil {
		return nil, err
	}
	s.desc = desc
	return s, nil
}

// description is the gst-launch description: source, decoder, rate limit (before any
// scaling or conversion), then scaling to GRAY8 into the AnalysisSink appsink. H.264 cannot
// be thinned before the decoder (P-frames need every frame before them), so a substream
// at a low resolution is what keeps the decode cheap.
func (s *AnalysisSource) description() (string, error) {
	o := s.opts
	var b strings.Builder
	sync := "sync=false"
	switch s.kind {
	case analysisUnits:
		keys := ""
		if o.KeyframesOnly {
			keys = " (keyframes only)"
		}
		if s.inProcess {
			return fmt.Sprintf("access units of %s%s → libopenh264 %s (in process) → luma plane scaled to %dx%d GRAY8, at most %d fps",
				o.URI, keys, openh264.Version(), o.Width, o.Height, o.Framerate), nil
		}
		return s.unitsDescription(), nil
	case analysisRTSP:
		protocols := map[string]string{config.TransportTCP: "tcp", config.TransportUDP: "udp+udp-mcast", config.TransportAuto: "tcp+udp+udp-mcast"}[o.Transport]
		if protocols == "" {
			protocols = "tcp"
		}
		// No jitter-buffer latency: analysis wants the newest picture, not a smooth one.
		fmt.Fprintf(&b, "rtspsrc location=%s protocols=%s latency=0 tcp-timeout=5000000 ! rtph264depay ! h264parse ! %s ! ",
			quote(o.URI), protocols, o.Decoder.Fragment())
	case analysisFile:
		path := strings.TrimPrefix(o.URI, "file://")
		if path == "" {
			return "", errors.New("analysis source: no file named; set media.analysis.source")
		}
		fmt.Fprintf(&b, "filesrc location=%s ! parsebin ! h264parse ! %s ! ", quote(path), o.Decoder.Fragment())
		sync = "sync=true" // a file stands for a camera: played in real time
	case analysisDevice:
		dev := strings.TrimPrefix(o.URI, "v4l2://")
		if dev == "" {
			return "", errors.New("analysis source: no V4L2 device named; set media.analysis.source, e.g. /dev/video1")
		}
		fmt.Fprintf(&b, "v4l2src device=%s ! video/x-raw ! ", quote(dev))
	}
	fmt.Fprintf(&b, "videorate drop-only=true max-rate=%d ! videoconvert ! videoscale ! "+
		"video/x-raw,format=GRAY8,width=%d,height=%d,pixel-aspect-ratio=1/1 ! appsink name=%s %s max-buffers=1 drop=true",
		o.Framerate, o.Width, o.Height, AnalysisSink, sync)
	return b.String(), nil
}

// Description returns the pipeline description with URL passwords redacted.
func (s *AnalysisSource) Description() string { return config.RedactURL(s.desc) }

// Decoder returns the H.264 decoder the source runs (zero for a raw device); libopenh264
// when it decodes in process.
func (s *AnalysisSource) Decoder() Decoder {
	switch {
	case s.kind == analysisDevice:
		return Decoder{}
	case s.inProcess:
		d := s.opts.Decoder
		d.Element = InProcessOpenH264
		d.Reason += "; libopenh264 called in process, without GStreamer"
		return d
	}
	return s.opts.Decoder
}

// InProcessOpenH264 is the decoder name of a source that calls libopenh264 in process.
const InProcessOpenH264 = "libopenh264"

// Frames delivers the analysis frames. When the reader falls behind, the oldest frame is
// dropped: motion wants the newest picture.
func (s *AnalysisSource) Frames() <-chan Frame { return s.frames }

// Changed receives a value whenever the state changes (read Health then).
func (s *AnalysisSource) Changed() <-chan struct{} { return s.changed }

// Health returns the source's state and counters.
func (s *AnalysisSource) Health() AnalysisHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	reason := s.reason
	if s.state == AnalysisDown && reason == "" {
		// Down before the run ended: say what the reader knows, or what is seen.
		reason = config.RedactURL(s.ingestReason())
		if reason == "" {
			reason = fmt.Sprintf("%s for %s", errStalled, s.opts.StallTimeout)
		}
	}
	return AnalysisHealth{State: s.state, Frames: s.count, Restarts: s.restarts, LastFrame: s.lastFrame, Reason: reason}
}

// Run runs the pipeline until ctx ends (nil) or it cannot be built at all (a missing
// element, a bad description): failures while running are logged, the state goes down
// once no frame arrived for the stall timeout, and the pipeline restarts with jittered
// exponential back-off; a file plays again at once when it ends.
func (s *AnalysisSource) Run(ctx context.Context) error {
	s.mu.Lock()
	s.runStart = time.Now()
	s.mu.Unlock()
	monitorCtx, stopMonitor := context.WithCancel(ctx)
	defer stopMonitor()
	go s.monitor(monitorCtx)
	ingestCtx, stopIngest := context.WithCancel(ctx)
	wait := s.runIngest(ingestCtx)
	defer wait()
	defer stopIngest()

	failures := 0
	for {
		started := time.Now()
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var setup *setupError
		if errors.As(err, &setup) {
			s.setReason(setup.err.Error())
			s.setState(AnalysisDown)
			return fmt.Errorf("analysis source: %w", setup.err)
		}
		s.mu.Lock()
		s.restarts++
		n, ran := s.restarts, s.runFrames > 0
		s.reason = config.RedactURL(errString(err))
		s.mu.Unlock()
		if errors.Is(err, gst.ErrEOS) && s.kind == analysisFile && ran {
			s.log.Debug("analysis file ended; playing it again")
			continue
		}
		if time.Since(started) > 2*s.opts.MaxBackoff {
			failures = 0 // it ran well for a while: start the back-off again
		}
		failures++
		wait := backoff.Delay(time.Second, s.opts.MaxBackoff, failures)
		s.log.Warn("analysis pipeline stopped; restarting", zap.String("reason", config.RedactURL(errString(err))),
			zap.Duration("in", wait), zap.Int("restarts", n))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (s *AnalysisSource) setReason(r string) {
	s.mu.Lock()
	s.reason = config.RedactURL(r)
	s.mu.Unlock()
}

// setState records a state and signals Changed when it differs from the previous one.
func (s *AnalysisSource) setState(st AnalysisState) {
	s.mu.Lock()
	changed := s.setStateLocked(st)
	s.mu.Unlock()
	if changed {
		s.signal()
	}
}

func (s *AnalysisSource) setStateLocked(st AnalysisState) bool {
	changed := s.state != st
	s.state = st
	return changed
}

func (s *AnalysisSource) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// monitor marks the source down when no frame arrived for the stall timeout (counted from
// Run's start before the first frame).
func (s *AnalysisSource) monitor(ctx context.Context) {
	tick := time.NewTicker(min(s.opts.StallTimeout/4, 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		since := s.lastFrame
		if since.IsZero() {
			since = s.runStart
		}
		changed := time.Since(since) > s.opts.StallTimeout && s.setStateLocked(AnalysisDown)
		s.mu.Unlock()
		if changed {
			s.signal()
		}
	}
}

func (s *AnalysisSource) runOnce(ctx context.Context) error {
	if s.kind == analysisUnits {
		return s.runUnits(ctx)
	}
	p, err := gst.Parse(s.desc, gst.Options{Name: "analysis", Log: s.log, Redact: config.RedactURL})
	if err != nil {
		return &setupError{err}
	}
	if err := p.OnSample(AnalysisSink, s.onFrame); err != nil {
		return &setupError{err}
	}
	started := s.startRun()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go s.watch(runCtx, cancel, started)
	err = p.Run(runCtx)
	if cause := context.Cause(runCtx); errors.Is(cause, errStalled) {
		return fmt.Errorf("%w for %s", errStalled, s.opts.StallTimeout)
	}
	if err != nil {
		return err
	}
	return gst.ErrEOS
}

// watch ends a run that delivers no frame for the stall timeout (twice that for its first
// frame: RTSP sessions take a moment to start).
func (s *AnalysisSource) watch(ctx context.Context, cancel context.CancelCauseFunc, started time.Time) {
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
		if s.runFrames == 0 {
			limit, since = 2*limit, started
		}
		s.mu.Unlock()
		if time.Since(since) > limit {
			cancel(errStalled)
			return
		}
	}
}

// onFrame runs on the GStreamer streaming thread: it must not block.
func (s *AnalysisSource) onFrame(smp gst.Sample) {
	stride := 0
	if smp.Height > 0 {
		stride = len(smp.Data) / smp.Height
	}
	s.deliverStride(smp.Data, smp.Width, smp.Height, stride, smp.PTS)
}

// deliver hands on a packed GRAY8 frame with its stream timestamp (gst.NoTime: unknown).
func (s *AnalysisSource) deliver(data []byte, width, height int, pts time.Duration) {
	s.deliverStride(data, width, height, width, pts)
}

// deliverStride places a frame on the source's continuous timeline, counts it and hands it
// on without blocking.
func (s *AnalysisSource) deliverStride(data []byte, width, height, stride int, streamPTS time.Duration) {
	now := time.Now()
	s.mu.Lock()
	if s.first == gst.NoTime && streamPTS != gst.NoTime {
		s.first = streamPTS
	}
	pts := s.end
	if streamPTS != gst.NoTime && s.first != gst.NoTime {
		pts = s.base + streamPTS - s.first
	}
	s.end = max(s.end, pts+time.Second/time.Duration(s.opts.Framerate))
	s.count++
	s.runFrames++
	s.lastFrame = now
	s.reason = ""
	changed := s.setStateLocked(AnalysisUp)
	s.mu.Unlock()
	if changed {
		s.signal()
	}

	f := Frame{Data: data, Width: width, Height: height, Stride: stride, PTS: pts, Wall: now}
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
