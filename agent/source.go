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

// VideoSource captures video into the Hub: GStreamer's capture pipeline (media.Source), or
// the Go RTSP client for a passed-through H.264 camera (rtspingest.Source).
type VideoSource interface {
	// Run captures until ctx ends (nil) or the source cannot go on.
	Run(ctx context.Context) error
	// Description says what captures, passwords redacted.
	Description() string
	// Frames delivers analysis frames of the main stream (none from the Go RTSP client).
	Frames() <-chan media.Frame
	SPS() []byte
	Stats() (frames uint64, restarts int)
	LastFrame() time.Time
	FrameCount() uint64
	// The encoder's controls: a passed-through source answers media.ErrNotEncoding.
	Encoding() bool
	ForceKeyframe() error
	Bitrate() int
	SetBitrate(kbps int) error
	Framerate() int
	SetFramerate(fps int) error
}

var (
	_ VideoSource = (*media.Source)(nil)
	_ VideoSource = (*rtspingest.Source)(nil)
)

// RTSP clients a source can resolve to (media.source.rtsp_client).
const (
	clientGo        = config.RTSPClientGo
	clientGStreamer = config.RTSPClientGStreamer
)

// rtspClient settles media.source.rtsp_client: auto takes the Go client for an rtsp://
// camera whose H.264 is passed through when nothing decodes the main stream (motion
// analysis off, or fed by media.analysis.source); anything else goes through GStreamer.
// why says what decided.
func rtspClient(cfg config.Config, plan media.Plan) (client, why string) {
	src := cfg.Media.Source
	if src.Kind != config.SourceRTSP {
		return "", ""
	}
	switch src.RTSPClient {
	case config.RTSPClientGo, config.RTSPClientGStreamer:
		return src.RTSPClient, "media.source.rtsp_client"
	}
	switch {
	case plan.Encode != media.EncodePassthrough:
		return clientGStreamer, "the stream is encoded again (media.encoder.kind " + plan.Encode + ")"
	case !strings.HasPrefix(src.URL, "rtsp://"):
		return clientGStreamer, "the Go client reads rtsp:// addresses only"
	case mainStreamDecoded(cfg, plan):
		// TODO(analysis): analysis of the main stream could decode the Hub's access units
		// (appsrc ! decoder ! appsink, as media/feeder.go feeds the recorders) and keep the
		// Go client; today it takes GStreamer's capture pipeline with its analysis branch.
		return clientGStreamer, "motion analysis decodes the main stream"
	}
	return clientGo, "the stream is passed through and nothing decodes it"
}

// mainStreamDecoded reports whether motion analysis reads the capture pipeline's own
// decoded frames.
func mainStreamDecoded(cfg config.Config, plan media.Plan) bool {
	return cfg.Motion.Enabled && plan.AnalyseMain()
}

// newVideoSource builds the source that captures video for the plan.
func newVideoSource(cfg config.Config, plan media.Plan, hub *media.Hub, log *zap.Logger) (VideoSource, error) {
	client, why := rtspClient(cfg, plan)
	if client != "" {
		log.Info("RTSP client", zap.String("client", client), zap.String("why", why))
	}
	if client == clientGo {
		if plan.Encode != media.EncodePassthrough {
			return nil, fmt.Errorf("media.source.rtsp_client go passes the camera's H.264 through: set media.encoder.kind to auto or passthrough, or media.source.rtsp_client to gstreamer (encoder %s)", plan.Encode)
		}
		if mainStreamDecoded(cfg, plan) {
			log.Warn("media.source.rtsp_client go decodes nothing: motion analysis gets no frames from the main stream; set media.analysis.source to the camera's substream, or media.source.rtsp_client to auto")
		}
		s, err := rtspingest.New(rtspingest.Options{
			URL: cfg.Media.Source.URL, Transport: cfg.Media.Source.Transport, Hub: hub, Log: log,
			StallTimeout: cfg.Media.StallTimeout, MaxBackoff: cfg.Media.RestartBackoff,
			BitrateKbps: cfg.Media.Encoder.BitrateKbps, Framerate: cfg.Media.Source.Framerate,
		})
		if err != nil {
			return nil, fmt.Errorf("media.source.url: %w", err)
		}
		return s, nil
	}
	s, err := media.NewSource(media.SourceOptions{
		Plan:         plan,
		Loop:         cfg.Media.Source.Kind == config.SourceFile && cfg.Media.Source.Loop,
		Hub:          hub,
		Log:          log,
		StallTimeout: cfg.Media.StallTimeout,
		MaxBackoff:   cfg.Media.RestartBackoff,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}
