package motion

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// shifted returns a w x h window of the big picture src (bw wide) at x, y.
func window(src []byte, bw, x, y, w, h int) []byte {
	f := make([]byte, w*h)
	for r := range h {
		copy(f[r*w:(r+1)*w], src[(y+r)*bw+x:(y+r)*bw+x+w])
	}
	return f
}

// TestShakeIsCompensated: a camera that shakes by up to 3 pixels every frame over a
// fine texture reports no motion and the shift it saw; an object crossing the shaking view
// is still motion; a still camera with a big object crossing sees no shift.
func TestShakeIsCompensated(t *testing.T) {
	const m = 8
	big := texture(testW+2*m, testH+2*m, 4)
	offsets := [][2]int{{0, 0}, {2, 1}, {-3, 0}, {1, -2}, {3, 3}, {-1, 2}, {0, -3}, {-2, -1}}
	// The camera is still while the background is learnt, then shakes.
	at := func(i int) (int, int) {
		if i < warm {
			return 0, 0
		}
		o := offsets[i%len(offsets)]
		return o[0], o[1]
	}
	shaking := func(i int) []byte {
		dx, dy := at(i)
		return window(big, testW+2*m, m+dx, m+dy, testW, testH)
	}
	rs := run(t, Options{}, 60, shaking)
	require.Empty(t, motionFrames(rs), "shake alone is no motion")
	disturbed := func(rs []Result) (n int) {
		for _, r := range rs {
			if r.Motion || r.Illumination {
				n++
			}
		}
		return n
	}
	require.Zero(t, disturbed(rs), "nor a change of the whole picture")
	for i := warm; i < 60; i++ {
		dx, dy := at(i)
		// The window moved by (dx, dy): the picture moved the other way.
		require.Equal(t, [2]int{-dx, -dy}, [2]int{rs[i].ShiftX, rs[i].ShiftY}, "frame %d", i)
	}
	// Without compensation the same shake changes the whole picture (or moves).
	off := run(t, Options{MaxShift: -1}, 30, shaking)
	require.Positive(t, disturbed(off))

	withObject := run(t, Options{}, 60, func(i int) []byte {
		f := shaking(i)
		if i >= warm {
			fillRect(f, testW, 20+4*(i-warm), 80, 20, 30, 250)
		}
		return f
	})
	moving := motionFrames(withObject)
	require.GreaterOrEqual(t, len(moving), 60-warm-DefaultPersistFrames, "motion in %v", moving)

	bg := texture(testW, testH, 5)
	still := run(t, Options{}, 40, func(i int) []byte {
		if i < warm {
			return bg
		}
		return withSquare(bg, testW, 10+6*(i-warm), 40, 90, 10)
	})
	for i := warm; i < 40; i++ {
		require.Zero(t, still[i].ShiftX, "frame %d", i)
		require.Zero(t, still[i].ShiftY, "frame %d", i)
		if i >= warm+DefaultPersistFrames-1 {
			require.True(t, still[i].Motion, "frame %d", i)
		}
	}
}
