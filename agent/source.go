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
// camera whose H.264 is passed through (motion analysis of the main stream then decodes the
// hub's access units: half the CPU of GStreamer's capture pipeline with keyframes only, and
// less memory); anything else goes through GStreamer. why says what decided.
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
	}
	return clientGo, "the stream is passed through and nothing decodes it"
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
