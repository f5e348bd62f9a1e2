package agent

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// controlEncoder sets the encoder's bitrate and frame rate while the agent encodes:
//   - full quality (media.encoder.bitrate_kbps, media.source.framerate) while something moves
//     or someone watches, the idle profile (motion.idle_*) otherwise;
//   - while someone watches, the bitrate fits the viewers' bandwidth estimate (the lowest
//     across viewers, with headroom, never below webrtc.min_bitrate_kbps).
//
// A passed-through source keeps the camera's bitrate: only recording is gated then.
func (a *Agent) controlEncoder(ctx context.Context) {
	motionOn := a.cfg.Motion.Enabled && a.cfg.Media.Analysis.Enabled
	if !a.source.Encoding() || (a.webrtc == nil && !motionOn) {
		return
	}
	full := a.cfg.Media.Encoder.BitrateKbps
	fullFPS := a.cfg.Media.Source.Framerate
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		viewers := 0
		if a.webrtc != nil {
			viewers = a.webrtc.Viewers()
		}
		bitrate, fps := full, fullFPS
		if motionOn && viewers == 0 && !a.MotionActive() {
			if idle := a.cfg.Motion.IdleBitrateKbps; idle > 0 {
				bitrate = min(full, idle)
			}
			if idle := a.cfg.Motion.IdleFramerate; idle > 0 {
				fps = min(fullFPS, idle)
			}
		}
		if a.webrtc != nil {
			if est, ok := a.webrtc.EstimatedBitrate(); ok {
				// Leave headroom for RTP, retransmissions and keyframe bursts.
				bitrate = max(a.cfg.WebRTC.MinBitrateKbps, min(bitrate, est*85/100))
			}
		}
		if fps != a.source.Framerate() {
			if err := a.source.SetFramerate(fps); err == nil {
				a.log.Info("encoder frame rate", zap.Int("fps", fps), zap.Int("viewers", viewers), zap.Bool("motion", a.MotionActive()))
			}
		}
		cur := a.source.Bitrate()
		if abs(bitrate-cur)*20 < cur { // within 5%: not worth a change
			continue
		}
		if err := a.source.SetBitrate(bitrate); err != nil {
			a.log.Debug("bitrate not changed", zap.Error(err))
			continue
		}
		a.log.Info("encoder bitrate", zap.Int("kbps", bitrate), zap.Int("viewers", viewers), zap.Bool("motion", a.MotionActive()))
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
