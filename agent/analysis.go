package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/rtspingest"
	"go.uber.org/zap"
)

// AnalysisStatus is the motion analysis part of the status message.
type AnalysisStatus struct {
	// Source is "main" (the capture pipeline's own branch) or media.analysis.source, its
	// password redacted.
	Source string `json:"source"`
	// Decoder is the H.264 decoder element analysis runs (avdec_h264, v4l2h264dec, …);
	// empty for raw video.
	Decoder string `json:"decoder,omitempty"`
	// State is ok, starting or degraded (a separate source delivers nothing).
	State    string `json:"state"`
	Degraded bool   `json:"degraded"`
	// FailSafe is true while analysis is degraded and motion recording records everything.
	FailSafe bool   `json:"failSafe,omitempty"`
	Frames   uint64 `json:"frames,omitempty"`
	Restarts int    `json:"restarts,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// setupAnalysis prepares a separate analysis source when media.analysis.source names one
// (and motion detection reads it), and logs where analysis frames come from.
func (a *Agent) setupAnalysis(plan media.Plan) error {
	cfg := a.cfg
	an := cfg.Media.Analysis
	if !an.Enabled || !cfg.Motion.Enabled {
		return nil
	}
	a.motion.decoder = plan.Decoder
	log := a.log.Named("analysis")
	if an.Source == "" {
		if _, goClient := a.source.(*rtspingest.Source); goClient && !plan.Raw {
			return a.setupMainUnits(plan, log)
		}
		if !plan.Raw {
			log.Info("motion analysis decodes the main stream", zap.String("decoder", plan.Decoder.Element), zap.String("why", plan.Decoder.Reason))
		}
		return nil
	}
	opts := media.AnalysisSourceOptions{
		URI: an.Source, Width: an.Width, Height: an.Height, Framerate: an.Framerate,
		Decoder: plan.Decoder, Transport: cfg.Media.Source.Transport,
		StallTimeout: cfg.Media.StallTimeout, MaxBackoff: cfg.Media.RestartBackoff,
		Log: log,
	}
	if substreamGoClient(cfg) {
		units, err := substreamUnits(cfg, log)
		if err != nil {
			return err
		}
		opts.Units = units
	}
	src, err := media.NewAnalysisSource(opts)
	if err != nil {
		return err
	}
	a.motion.feed = src
	log.Info("motion analysis reads its own source", zap.String("source", config.RedactURL(an.Source)),
		zap.String("decoder", src.Decoder().Element), zap.String("why", src.Decoder().Reason), zap.String("description", src.Description()))
	return nil
}

// setupMainUnits analyses the main stream read by the Go RTSP client: its decoder reads
// the hub's access units (appsrc ! decoder ! … ! appsink, or libopenh264 in process with
// media.analysis.decoder openh264), so the stream needs no GStreamer capture pipeline.
func (a *Agent) setupMainUnits(plan media.Plan, log *zap.Logger) error {
	cfg := a.cfg
	an := cfg.Media.Analysis
	stall := cfg.Media.StallTimeout
	if an.KeyframesOnly {
		stall = max(stall, 10*time.Second) // one frame per GOP
	}
	src, err := media.NewAnalysisSource(media.AnalysisSourceOptions{
		URI: "main", Width: an.Width, Height: an.Height, Framerate: an.Framerate,
		Decoder: plan.Decoder, KeyframesOnly: an.KeyframesOnly,
		StallTimeout: stall, MaxBackoff: cfg.Media.RestartBackoff,
		Units: &media.AnalysisUnits{Hub: a.hub}, Log: log,
	})
	if err != nil {
		return err
	}
	a.motion.feed = src
	log.Info("motion analysis decodes the main stream's access units (Go RTSP client)", zap.String("decoder", src.Decoder().Element),
		zap.String("why", src.Decoder().Reason), zap.Bool("keyframes_only", an.KeyframesOnly), zap.String("description", src.Description()))
	return nil
}

// substreamGoClient reports whether the Go RTSP client reads media.analysis.source: an
// rtsp:// substream, unless media.source.rtsp_client insists on GStreamer (rtsps://
// substreams, files and devices are GStreamer's).
func substreamGoClient(cfg config.Config) bool {
	return strings.HasPrefix(cfg.Media.Analysis.Source, "rtsp://") && cfg.Media.Source.RTSPClient != config.RTSPClientGStreamer
}

// substreamUnits reads the analysis substream with the Go RTSP client (the same client as
// the main stream's, media/rtspingest) into a Hub of its own that keeps only the current
// GOP: the analysis source decodes its access units, without GStreamer's rtspsrc, RTP
// session and jitter buffer.
func substreamUnits(cfg config.Config, log *zap.Logger) (*media.AnalysisUnits, error) {
	hub := media.NewHub(media.HubOptions{MaxBytes: 8 << 20})
	ing, err := rtspingest.New(rtspingest.Options{
		URL: cfg.Media.Analysis.Source, Transport: cfg.Media.Source.Transport, Hub: hub, Log: log.Named("rtsp"),
		StallTimeout: cfg.Media.StallTimeout, MaxBackoff: cfg.Media.RestartBackoff,
	})
	if err != nil {
		return nil, fmt.Errorf("media.analysis.source: %w", err)
	}
	return &media.AnalysisUnits{Hub: hub, Ingest: ing}, nil
}

// analysisFrames returns where the motion loop reads frames, and starts the separate
// analysis source if there is one; wait returns once it has stopped (after ctx ends).
func (a *Agent) analysisFrames(ctx context.Context, log *zap.Logger) (frames <-chan media.Frame, changed <-chan struct{}, wait func()) {
	feed := a.motion.feed
	if feed == nil {
		return a.source.Frames(), nil, func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := feed.Run(ctx); err != nil {
			log.Error("motion analysis source failed; recording as if analysis were down", zap.Error(err))
		}
	}()
	return feed.Frames(), feed.Changed(), func() { <-done }
}

// onAnalysisHealth acts on a change of the separate analysis source's state. While it is
// down, motion gating fails safe: recording.mode motion records everything (from the
// pre-roll before the last analysis frame) and the encoder keeps full quality, so that no
// event goes unrecorded; an event under way ends (its end is unknown). Once frames flow
// again, it returns true: the caller starts a fresh detector and gate (the background is
// learnt again), and the recordings end as after an event unless a new one starts.
func (a *Agent) onAnalysisHealth(log *zap.Logger, flush func() bool) (recovered bool) {
	h := a.motion.feed.Health()
	a.motion.mu.Lock()
	was := a.motion.failsafe
	a.motion.mu.Unlock()
	switch {
	case h.State == media.AnalysisDown && !was:
		a.motion.mu.Lock()
		a.motion.failsafe = true
		a.motion.mu.Unlock()
		log.Warn("motion analysis degraded: its source delivers nothing; recording everything until it is back",
			zap.String("reason", h.Reason), zap.Time("last_frame", h.LastFrame))
		flush() // an event under way ends; the recordings go on (fail-safe)
		if a.cfg.Recording.Mode == config.RecordMotion {
			since := h.LastFrame
			if since.IsZero() {
				since = time.Now()
			}
			a.startMotionRecordings(since.Add(-a.config().Motion.PreRoll))
		}
	case h.State == media.AnalysisUp && was:
		a.motion.mu.Lock()
		a.motion.failsafe = false
		active := a.motion.active
		a.motion.mu.Unlock()
		log.Info("motion analysis back: recording follows motion again", zap.Int("restarts", h.Restarts))
		if a.cfg.Recording.Mode == config.RecordMotion && !active {
			a.stopMotionRecordings()
		}
		return true
	}
	return false
}

// analysisFailSafe reports whether analysis is down and gating fails safe.
func (a *Agent) analysisFailSafe() bool {
	a.motion.mu.Lock()
	defer a.motion.mu.Unlock()
	return a.motion.failsafe
}

// analysisStatus returns the analysis part of the status (nil when motion analysis is off).
func (a *Agent) analysisStatus() *AnalysisStatus {
	cfg := a.cfg
	if !cfg.Media.Analysis.Enabled || !cfg.Motion.Enabled {
		return nil
	}
	s := &AnalysisStatus{Source: "main", Decoder: a.motion.decoder.Element, State: "ok"}
	feed := a.motion.feed
	if feed == nil {
		return s
	}
	h := feed.Health()
	if cfg.Media.Analysis.Source != "" {
		s.Source = config.RedactURL(cfg.Media.Analysis.Source)
	}
	s.Decoder = feed.Decoder().Element
	s.Frames, s.Restarts, s.Reason = h.Frames, h.Restarts, h.Reason
	switch h.State {
	case media.AnalysisDown:
		s.State, s.Degraded = "degraded", true
	case media.AnalysisStarting:
		s.State = "starting"
	}
	s.FailSafe = a.analysisFailSafe()
	return s
}
