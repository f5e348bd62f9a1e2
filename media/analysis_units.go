package media

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/openh264"
	"go.uber.org/zap"
)

// AnalysisUnits is where a separate analysis source's H.264 comes from when GStreamer does
// not read it: the access units of a Hub, filled by Ingest (the Go RTSP client reading a
// camera's substream, media/rtspingest) or, for analysis of the main stream, by the
// capture source itself (Ingest nil).
type AnalysisUnits struct {
	Hub *Hub
	// Ingest fills Hub until ctx ends, reconnecting by itself; nil when something else
	// fills it.
	Ingest Ingest
}

// Ingest reads a stream into a Hub (rtspingest.Source).
type Ingest interface {
	// Run reads until ctx ends (nil); it reconnects by itself.
	Run(ctx context.Context) error
	// LastError says why the newest session ended (nil while none has).
	LastError() error
}

// analysisAppSrc is the appsrc that access units enter a GStreamer decoding pipeline by.
const analysisAppSrc = "analysisunits"

// unitsInProcess reports whether a Hub-fed source decodes in process with libopenh264: the
// decoder resolved to openh264 and the library loads. No GStreamer pipeline runs then.
func unitsInProcess(d Decoder) bool {
	return d.Element == "openh264dec" && openh264.Load() == nil
}

// unitsDescription is the GStreamer pipeline that decodes a Hub's access units: appsrc, the
// decoder (after h264parse for a hardware decoder, which needs the stream's size in its
// caps; software decoders read the SPS themselves), the rate limit, then GRAY8 at the
// analysis size.
func (s *AnalysisSource) unitsDescription() string {
	o := s.opts
	parse := ""
	if o.Decoder.Kind == DecodeV4L2 {
		parse = "h264parse ! "
	}
	return fmt.Sprintf("appsrc name=%s format=time is-live=true block=true max-buffers=4 "+
		"caps=video/x-h264,stream-format=byte-stream,alignment=au ! %s%s ! "+
		"videorate drop-only=true max-rate=%d ! videoconvert ! videoscale ! "+
		"video/x-raw,format=GRAY8,width=%d,height=%d,pixel-aspect-ratio=1/1 ! appsink name=%s sync=false max-buffers=1 drop=true",
		analysisAppSrc, parse, o.Decoder.Fragment(), o.Framerate, o.Width, o.Height, AnalysisSink)
}

// runIngest runs the Ingest of a Hub-fed source until ctx ends.
func (s *AnalysisSource) runIngest(ctx context.Context) (wait func()) {
	if s.opts.Units == nil || s.opts.Units.Ingest == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.opts.Units.Ingest.Run(ctx); err != nil {
			s.log.Warn("analysis stream reader stopped", zap.String("reason", config.RedactURL(err.Error())))
		}
	}()
	return func() { <-done }
}

// ingestReason says why the ingest's newest session ended, if it has.
func (s *AnalysisSource) ingestReason() string {
	if s.opts.Units == nil || s.opts.Units.Ingest == nil {
		return ""
	}
	if err := s.opts.Units.Ingest.LastError(); err != nil {
		return err.Error()
	}
	return ""
}

// startRun resets the per-run state before a run's first frame.
func (s *AnalysisSource) startRun() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.base = s.end
	s.first = gst.NoTime
	s.runFrames = 0
	return time.Now()
}

// runUnits decodes the Hub's access units until ctx ends, the run stalls or the decoder
// fails: in process with libopenh264, or through a GStreamer appsrc pipeline.
func (s *AnalysisSource) runUnits(ctx context.Context) error {
	if s.inProcess {
		return s.runInProcess(ctx)
	}
	p, err := gst.Parse(s.desc, gst.Options{Name: "analysis", Log: s.log, Redact: config.RedactURL})
	if err != nil {
		return &setupError{err}
	}
	src, err := p.AppSrc(analysisAppSrc)
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

	sub := s.opts.Units.Hub.Subscribe(SubscribeOptions{Name: "analysis", QueueFrames: unitsQueue})
	defer sub.Close()
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		base := time.Duration(-1)
		skip := unitSkipper{stale: s.opts.StallTimeout, keyframesOnly: s.opts.KeyframesOnly}
		for {
			au, err := sub.Next(runCtx)
			if err != nil {
				return
			}
			if skip.skip(au) {
				continue
			}
			if base < 0 {
				base = au.PTS
			}
			// Push blocks while the decoder is busy (block=true): the subscription then
			// queues, and skips to the next keyframe when it falls too far behind.
			if err := src.Push(gst.Buffer{Data: au.Data, PTS: au.PTS - base, DTS: au.DTS - base, Duration: au.Duration, Delta: !au.Keyframe}); err != nil {
				s.log.Debug("analysis pipeline stopped taking access units", zap.Error(err))
				return
			}
		}
	}()
	err = p.Run(runCtx)
	cancel(nil)
	<-fed
	return s.runEnd(runCtx, err)
}

// unitsQueue bounds the access units a Hub-fed source queues while its decoder is busy
// (4 s at 30 fps): beyond it the subscription skips to the next keyframe.
const unitsQueue = 120

// runEnd says why a run ended.
func (s *AnalysisSource) runEnd(runCtx context.Context, err error) error {
	if cause := context.Cause(runCtx); errors.Is(cause, errStalled) {
		if r := s.ingestReason(); r != "" {
			return fmt.Errorf("%w for %s (%s)", errStalled, s.opts.StallTimeout, r)
		}
		return fmt.Errorf("%w for %s", errStalled, s.opts.StallTimeout)
	}
	if err != nil {
		return err
	}
	return gst.ErrEOS
}

// runInProcess decodes the Hub's access units with libopenh264, keeps a picture per
// analysis period and scales its luma plane (the GRAY8 picture, without any colour
// conversion) to the analysis size.
func (s *AnalysisSource) runInProcess(ctx context.Context) error {
	dec, err := openh264.New()
	if err != nil {
		return err
	}
	defer dec.Close()
	started := s.startRun()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go s.watch(runCtx, cancel, started)

	sub := s.opts.Units.Hub.Subscribe(SubscribeOptions{Name: "analysis", QueueFrames: unitsQueue})
	defer sub.Close()
	limit := rateLimit{period: time.Second / time.Duration(s.opts.Framerate)}
	skip := unitSkipper{stale: s.opts.StallTimeout, keyframesOnly: s.opts.KeyframesOnly}
	for {
		au, err := sub.Next(runCtx)
		if err != nil {
			return s.runEnd(runCtx, nil)
		}
		if skip.skip(au) {
			continue
		}
		pic, ok, err := dec.Decode(au.Data, au.PTS)
		if err == nil && !ok && s.opts.KeyframesOnly {
			// A reordering stream's picture would come with the next unit: a GOP later.
			pic, ok, err = dec.Flush()
		}
		if err != nil {
			// A unit that does not decode (its reference lost): nothing until the next
			// keyframe, which decodes on its own.
			s.log.Debug("analysis: access unit not decoded; waiting for a keyframe", zap.Error(err))
			skip.gap = true
			continue
		}
		// A reordering stream (Main, High profile) gives each picture one unit late: its
		// own timestamp comes with it.
		if !ok || !limit.keep(pic.PTS) {
			continue
		}
		data := make([]byte, s.opts.Width*s.opts.Height)
		scaleGray(data, s.opts.Width, s.opts.Height, pic.Y, pic.Width, pic.Height, pic.Stride)
		s.deliver(data, s.opts.Width, s.opts.Height, pic.PTS)
	}
}

// unitSkipper says which access units a decoder skips: units older than stale (the hub's
// GOP kept from before an outage: decoded, they would make a dead source look alive; and
// units a decoder far behind would only catch up on), then everything up to the next
// keyframe; with keyframesOnly, every other unit.
type unitSkipper struct {
	stale         time.Duration
	keyframesOnly bool
	gap           bool // skip until a keyframe
}

func (k *unitSkipper) skip(au AccessUnit) bool {
	if !au.Wall.IsZero() && time.Since(au.Wall) > k.stale {
		k.gap = true
		return true
	}
	if (k.gap || k.keyframesOnly) && !au.Keyframe {
		return true
	}
	k.gap = false
	return false
}

// rateLimit keeps at most one picture per period, on a grid of periods (as videorate's
// max-rate does): 15 fps thinned to 5 keeps every third picture, 7 fps keeps about 5 of 7.
type rateLimit struct {
	period time.Duration
	next   time.Duration
	primed bool
}

func (r *rateLimit) keep(pts time.Duration) bool {
	slack := r.period / 8 // timestamps jitter (RTP clocks, cameras)
	switch {
	case !r.primed || pts < r.next-r.period-slack: // the first picture, or back in time
		r.next = pts + r.period
	case pts < r.next-slack:
		return false
	default:
		r.next += r.period
		if pts >= r.next { // after a gap: the grid starts again here
			r.next = pts + r.period
		}
	}
	r.primed = true
	return true
}

// scaleGray scales an 8-bit plane (sw x sh, stride sstride) to dst (dw x dh, packed),
// averaging the source pixels under each destination pixel (nearest pixel when enlarging).
// The picture is stretched to the analysis size: motion regions stay in the stream's
// 0..1 coordinates.
func scaleGray(dst []byte, dw, dh int, src []byte, sw, sh, sstride int) {
	if dw == sw && dh == sh {
		for y := range dh {
			copy(dst[y*dw:(y+1)*dw], src[y*sstride:y*sstride+sw])
		}
		return
	}
	x0s := make([]int, dw+1)
	for x := range dw + 1 {
		x0s[x] = x * sw / dw
	}
	for y := range dh {
		y0, y1 := y*sh/dh, (y+1)*sh/dh
		y1 = max(y1, y0+1)
		row := dst[y*dw : (y+1)*dw]
		for x := range dw {
			x0, x1 := x0s[x], max(x0s[x+1], x0s[x]+1)
			sum := 0
			for yy := y0; yy < y1; yy++ {
				line := src[yy*sstride+x0 : yy*sstride+x1]
				for _, v := range line {
					sum += int(v)
				}
			}
			n := (y1 - y0) * (x1 - x0)
			row[x] = byte((sum + n/2) / n)
		}
	}
}
