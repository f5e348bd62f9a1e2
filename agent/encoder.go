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
	fullFPS := a.cfg.Media.Source.Framerate
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		live := a.config() // a reload may change these while running
		in := encoderInputs{
			FullKbps: live.Media.Encoder.BitrateKbps, FullFPS: fullFPS,
			IdleKbps: live.Motion.IdleBitrateKbps, IdleFPS: live.Motion.IdleFramerate,
			MinKbps: live.WebRTC.MinBitrateKbps,
			// While analysis is down nothing says whether something moves: full quality.
			MotionOn: motionOn, Moving: a.MotionActive() || a.analysisFailSafe(),
		}
		if a.webrtc != nil {
			in.Viewers = a.webrtc.Viewers()
			in.EstimateKbps, in.HasEstimate = a.webrtc.EstimatedBitrate()
		}
		viewers := in.Viewers
		bitrate, fps := encoderTarget(in)
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

// encoderInputs is what the encoder's target depends on.
type encoderInputs struct {
	FullKbps, FullFPS int  // media.encoder.bitrate_kbps, media.source.framerate
	IdleKbps, IdleFPS int  // motion.idle_*; 0 keeps the full value
	MinKbps           int  // webrtc.min_bitrate_kbps
	MotionOn, Moving  bool // motion detection runs; an event is under way
	Viewers           int
	EstimateKbps      int // lowest bandwidth estimate across viewers
	HasEstimate       bool
}

// encoderTarget returns the bitrate and frame rate the encoder should run at.
func encoderTarget(in encoderInputs) (kbps, fps int) {
	kbps, fps = in.FullKbps, in.FullFPS
	if in.MotionOn && in.Viewers == 0 && !in.Moving {
		if in.IdleKbps > 0 {
			kbps = min(kbps, in.IdleKbps)
		}
		if in.IdleFPS > 0 {
			fps = min(fps, in.IdleFPS)
		}
	}
	if in.HasEstimate {
		// Leave headroom for RTP, retransmissions and keyframe bursts.
		kbps = max(in.MinKbps, min(kbps, in.EstimateKbps*85/100))
	}
	return kbps, fps
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
