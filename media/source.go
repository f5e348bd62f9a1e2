package media

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
	"go.uber.org/zap"
)

// ErrSourceEnded is returned by Source.Run when a non-looping source reached its end.
var ErrSourceEnded = errors.New("video source ended")

// SourceOptions configure a capture pipeline.
type SourceOptions struct {
	// Description is the gst-launch description (see SourceDescription).
	Description string
	// Loop plays the source again when it ends (files).
	Loop bool
	Hub  *Hub
	Log  *zap.Logger
}

// Source runs the capture pipeline and publishes its access units to the Hub on one
// continuous timeline, across restarts of the pipeline.
type Source struct {
	opts SourceOptions
	log  *zap.Logger

	mu       sync.Mutex
	pipeline *gst.Pipeline
	base     time.Duration // timeline position where the current pipeline run started
	end      time.Duration // timeline position just after the newest unit
	first    time.Duration // PTS of the current run's first unit, gst.NoTime before it
	sps      []byte
	frames   uint64
}

// NewSource returns a Source; nothing runs until Run.
func NewSource(opts SourceOptions) *Source {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	return &Source{opts: opts, log: opts.Log}
}

// Run captures until ctx ends (nil), the source ends (ErrSourceEnded) or the pipeline fails.
func (s *Source) Run(ctx context.Context) error {
	for {
		err := s.runOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, gst.ErrEOS) && s.opts.Loop:
			s.log.Info("video source ended; playing it again")
			s.opts.Hub.Discontinuity()
			continue
		case errors.Is(err, gst.ErrEOS):
			return ErrSourceEnded
		default:
			return err
		}
	}
}

func (s *Source) runOnce(ctx context.Context) error {
	p, err := gst.Parse(s.opts.Description, gst.Options{Name: "capture", Log: s.log})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pipeline = p
	s.base = s.end
	s.first = gst.NoTime
	s.mu.Unlock()
	if err := p.OnSample(VideoSink, s.onSample); err != nil {
		return err
	}
	return p.Run(ctx)
}

// onSample runs on the GStreamer streaming thread: it must not block.
func (s *Source) onSample(smp gst.Sample) {
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
	}
	if smp.DTS == gst.NoTime {
		au.DTS = au.PTS
	}
	s.end = max(s.end, au.PTS+au.Duration)
	s.frames++
	s.noteParamSets(au)
	s.mu.Unlock()
	s.opts.Hub.Publish(au)
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
		zap.String("codec", info.Codec()), zap.Float64("fps", info.FrameRate))
}

// Frames returns how many access units the source has published.
func (s *Source) Frames() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames
}
