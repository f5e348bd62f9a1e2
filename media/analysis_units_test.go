package media

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScaleGray(t *testing.T) {
	// A 4x2 source with a stride of 6 (two bytes of padding per row, never read).
	src := []byte{
		10, 20, 30, 40, 255, 255,
		50, 60, 70, 80, 255, 255,
	}
	tests := []struct {
		name   string
		dw, dh int
		want   []byte
	}{
		{"same size: rows copied without the padding", 4, 2, []byte{10, 20, 30, 40, 50, 60, 70, 80}},
		{"halved: 2x2 averages", 2, 1, []byte{35, 55}},
		{"one pixel: the mean", 1, 1, []byte{45}},
		{"width only", 2, 2, []byte{15, 35, 55, 75}},
		{"enlarged: nearest pixel", 8, 2, []byte{10, 10, 20, 20, 30, 30, 40, 40, 50, 50, 60, 60, 70, 70, 80, 80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, tt.dw*tt.dh)
			scaleGray(dst, tt.dw, tt.dh, src, 4, 2, 6)
			require.Equal(t, tt.want, dst)
		})
	}
}

func TestRateLimit(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	grid := func(step time.Duration, n int, jitter func(i int) time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i)*step + jitter(i)
		}
		return out
	}
	none := func(int) time.Duration { return 0 }
	tests := []struct {
		name string
		pts  []time.Duration
		kept int // pictures kept
		at   []time.Duration
	}{
		{"15 fps to 5: every third", grid(time.Second/15, 30, none), 10, nil},
		{"30 fps to 5", grid(time.Second/30, 60, none), 10, nil},
		{"7 fps to 5: five of seven", grid(time.Second/7, 70, none), 50, nil},
		{"5 fps with jitter: all", grid(200*time.Millisecond, 50, func(i int) time.Duration {
			return time.Duration((i%3)-1) * 15 * time.Millisecond
		}), 50, nil},
		{"a gap restarts the grid", ms(0, 66, 133, 200, 5000, 5066, 5133, 5200), 4, ms(0, 200, 5000, 5200)},
		{"back in time restarts the grid", ms(0, 200, 400, 100, 166, 300), 5, ms(0, 200, 400, 100, 300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rateLimit{period: 200 * time.Millisecond}
			var kept []time.Duration
			for _, p := range tt.pts {
				if r.keep(p) {
					kept = append(kept, p)
				}
			}
			require.Len(t, kept, tt.kept, "kept %v", kept)
			if tt.at != nil {
				require.Equal(t, tt.at, kept)
			}
		})
	}
}
