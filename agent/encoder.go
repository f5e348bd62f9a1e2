package agent

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// controlEncoder sets the encoder bitrate while the agent encodes: the configured bitrate,
// lowered to the viewers' bandwidth estimate (the lowest across viewers, never below
// webrtc.min_bitrate_kbps) while someone watches.
func (a *Agent) controlEncoder(ctx context.Context) {
	if !a.source.Encoding() || a.webrtc == nil {
		return
	}
	full := a.cfg.Media.Encoder.BitrateKbps
	floor := a.cfg.WebRTC.MinBitrateKbps
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		target := full
		if est, ok := a.webrtc.EstimatedBitrate(); ok {
			// Leave headroom for RTP, retransmissions and keyframe bursts.
			target = max(floor, min(full, est*85/100))
		}
		cur := a.source.Bitrate()
		if abs(target-cur)*20 < cur { // within 5%: not worth a change
			continue
		}
		if err := a.source.SetBitrate(target); err != nil {
			a.log.Debug("bitrate not changed", zap.Error(err))
			continue
		}
		a.log.Info("encoder bitrate", zap.Int("kbps", target), zap.Int("viewers", a.webrtc.Viewers()))
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
