package agent

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEncoderTarget(t *testing.T) {
	base := encoderInputs{FullKbps: 2000, FullFPS: 30, IdleKbps: 400, IdleFPS: 10, MinKbps: 300, MotionOn: true}
	with := func(f func(*encoderInputs)) encoderInputs { in := base; f(&in); return in }
	tests := []struct {
		name      string
		in        encoderInputs
		kbps, fps int
	}{
		{"still and unwatched: idle profile", base, 400, 10},
		{"motion: full quality", with(func(in *encoderInputs) { in.Moving = true }), 2000, 30},
		{"a viewer watches a still scene: full quality", with(func(in *encoderInputs) { in.Viewers = 1 }), 2000, 30},
		{"motion detection off: full quality", with(func(in *encoderInputs) { in.MotionOn = false }), 2000, 30},
		{"idle bitrate 0 keeps the full bitrate", with(func(in *encoderInputs) { in.IdleKbps = 0 }), 2000, 10},
		{"idle frame rate 0 keeps the full rate", with(func(in *encoderInputs) { in.IdleFPS = 0 }), 400, 30},
		{"idle above full never raises", with(func(in *encoderInputs) { in.IdleKbps, in.IdleFPS = 5000, 60 }), 2000, 30},
		{"viewer estimate lowers with 15% headroom", with(func(in *encoderInputs) {
			in.Viewers, in.EstimateKbps, in.HasEstimate = 2, 1000, true
		}), 850, 30},
		{"estimate above full keeps full", with(func(in *encoderInputs) {
			in.Viewers, in.EstimateKbps, in.HasEstimate = 1, 9000, true
		}), 2000, 30},
		{"estimate never below the floor", with(func(in *encoderInputs) {
			in.Viewers, in.EstimateKbps, in.HasEstimate = 1, 100, true
		}), 300, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kbps, fps := encoderTarget(tt.in)
			require.Equal(t, tt.kbps, kbps, "bitrate")
			require.Equal(t, tt.fps, fps, "frame rate")
		})
	}
}
