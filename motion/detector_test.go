package motion

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

const warm = DefaultWarmupFrames

// run feeds frames 0..n-1 from next to a detector made with o and returns every result.
func run(t testing.TB, o Options, n int, next func(i int) []byte) []Result {
	t.Helper()
	d, err := NewDetector(o)
	require.NoError(t, err)
	out := make([]Result, n)
	for i := range n {
		out[i], err = d.Process(next(i))
		require.NoError(t, err)
	}
	return out
}

// motionFrames returns the indices of the frames that reported motion.
func motionFrames(rs []Result) []int {
	var out []int
	for i, r := range rs {
		if r.Motion {
			out = append(out, i)
		}
	}
	return out
}

// scene is a synthetic clip: frame i of it.
type scene struct {
	name   string
	frames int
	frame  func(i int) []byte
}

// scenes returns the synthetic clips the tests share. Each is deterministic.
func scenes() map[string]scene {
	bg := texture(testW, testH, 1)
	// noise returns base with fresh sensor noise in every frame; a frame asked for twice
	// is the same.
	noise := func(base []byte, sigma float64, seed uint64) func(i int) []byte {
		rng := rand.New(rand.NewPCG(seed, 2))
		cache := map[int][]byte{}
		return func(i int) []byte {
			if f, ok := cache[i]; ok {
				return f
			}
			f := noisy(base, rng, sigma)
			cache[i] = f
			return f
		}
	}
	lit := mapped(bg, func(v float64) float64 { return v*1.3 + 15 })
	dark := mapped(bg, func(v float64) float64 { return v * 0.5 })
	shifted := mapped(bg, func(v float64) float64 { return v + 6 })
	ir := noise(flat(testW, testH, 128), 3, 9)
	// enters shows the background during warm-up and then frame(0), frame(1)...
	enters := func(frame func(i int) []byte) func(i int) []byte {
		return func(i int) []byte {
			if i < warm {
				return bg
			}
			return frame(i - warm)
		}
	}
	after := func(k int, before, after []byte) func(i int) []byte {
		return func(i int) []byte {
			if i < k {
				return before
			}
			return after
		}
	}
	list := []scene{
		{"static", 40, func(int) []byte { return bg }},
		{"moving square", 40, enters(func(i int) []byte { return withSquare(bg, testW, 10+8*i, 70, 24, 250) })},
		{"dark square", 40, enters(func(i int) []byte { return withSquare(bg, testW, 290-7*i, 20, 20, 0) })},
		{"faint square", 40, enters(func(i int) []byte { return withSquare(bg, testW, 10+8*i, 70, 24, 140) })},
		{"small slow object", 60, enters(func(i int) []byte { return withSquare(bg, testW, 100+i, 120, 16, 255) })},
		{"sensor noise", 60, noise(bg, 6, 3)},
		{"heavy sensor noise", 60, noise(bg, 12, 4)},
		{"lights on", 40, after(20, bg, lit)},
		{"lights off", 40, after(20, bg, dark)},
		{"exposure step", 40, after(20, bg, shifted)},
		{"exposure step with a faint square", 40, enters(func(i int) []byte {
			return withSquare(shifted, testW, 10+8*i, 70, 24, 140)
		})},
		{"IR switch to flat grey", 40, func(i int) []byte {
			if i < 20 {
				return bg
			}
			return ir(i)
		}},
		{"IR switch to another view", 40, after(20, bg, texture(testW, testH, 77))},
	}
	m := map[string]scene{}
	for _, s := range list {
		m[s.name] = s
	}
	return m
}

func TestNewDetectorErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"width without height", Options{Width: 320}, "frame size 320x0 is out of range"},
		{"negative", Options{Width: -1, Height: 10}, "out of range"},
		{"too small", Options{Width: 3, Height: 3}, "use 4 to 4096"},
		{"too large", Options{Width: 5000, Height: 100}, "out of range"},
		{"stride below width", Options{Width: 320, Height: 180, Stride: 300}, "stride 300 does not fit width 320"},
		{"sensitivity above 1", Options{Sensitivity: 1.5}, "sensitivity 1.5 is out of range"},
		{"negative sensitivity", Options{Sensitivity: -0.1}, "sensitivity -0.1 is out of range"},
		{"NaN sensitivity", Options{Sensitivity: math.NaN()}, "sensitivity NaN is out of range"},
		{"learn rate too small", Options{LearnRate: 0.0001}, "learn rate 0.0001 is out of range"},
		{"learn rate above 1", Options{LearnRate: 2}, "learn rate 2 is out of range"},
		{"negative warm-up", Options{WarmupFrames: -3}, "warm-up of -3 frames"},
		{"unknown units", Options{MaskUnits: 7, Masks: []Rect{{0, 0, 1, 1}}}, "mask units Units(7) are unknown"},
		{"empty rectangle", Options{Masks: []Rect{{10, 10, 0, 5}}}, "mask rectangle 1 {X:10 Y:10 W:0 H:5} is invalid"},
		{"NaN rectangle", Options{Masks: []Rect{{math.NaN(), 0, 5, 5}}}, "is invalid"},
		{"rectangle outside", Options{Masks: []Rect{{0, 0, 5, 5}, {400, 10, 20, 20}}}, "mask rectangle 2 {X:400 Y:10 W:20 H:20} in pixels covers no pixel of the 320x180 frame"},
		{"between pixel centres", Options{Masks: []Rect{{5.6, 5, 0.3, 1}}}, "mask rectangle 1 {X:5.6 Y:5 W:0.3 H:1} in pixels covers no pixel"},
		{"pixels given as normalized", Options{MaskUnits: Normalized, Masks: []Rect{{100, 0, 20, 12}}}, "in normalized covers no pixel"},
		{"polygon of two points", Options{MaskPolygons: []Polygon{{{0, 0}, {5, 5}}}}, "mask polygon 1 has 2 points"},
		{"polygon with infinity", Options{MaskPolygons: []Polygon{{{0, 0}, {math.Inf(1), 5}, {0, 5}}}}, "mask polygon 1 point 2"},
		{"polygon outside", Options{MaskPolygons: []Polygon{{{-50, -50}, {-10, -50}, {-10, -10}}}}, "mask polygon 1 [{X:-50 Y:-50} {X:-10 Y:-50} {X:-10 Y:-10}] in pixels covers no pixel"},
		{"everything masked", Options{MaskUnits: Normalized, Masks: []Rect{{0, 0, 1, 1}}}, "the masks cover the whole 320x180 frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDetector(tt.o)
			require.Nil(t, d)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestThresholdsFollowSensitivity(t *testing.T) {
	tests := []struct {
		sensitivity float64
		diff, area  float64
	}{
		{0, 14.125, 0.0005}, // default, 0.5
		{0.5, 14.125, 0.0005},
		{1, 5, 0.0000625},
		{1e-9, 40, 0.004},
	}
	for _, tt := range tests {
		d, err := NewDetector(Options{Sensitivity: tt.sensitivity})
		require.NoError(t, err)
		diff, area := d.Thresholds()
		require.InDelta(t, tt.diff, diff, 0.04, "sensitivity %v", tt.sensitivity)
		require.InDelta(t, tt.area, area, 1e-6, "sensitivity %v", tt.sensitivity)
	}
	// Higher sensitivity lowers both thresholds.
	prevDiff, prevArea := math.Inf(1), math.Inf(1)
	for s := 0.05; s <= 1; s += 0.05 {
		d, err := NewDetector(Options{Sensitivity: s})
		require.NoError(t, err)
		diff, area := d.Thresholds()
		require.LessOrEqual(t, diff, prevDiff)
		require.Less(t, area, prevArea)
		prevDiff, prevArea = diff, area
	}
}

func TestProcessRejectsWrongSize(t *testing.T) {
	d, err := NewDetector(Options{Width: 320, Height: 180, Stride: 324})
	require.NoError(t, err)
	_, err = d.Process(make([]byte, 320*180))
	require.EqualError(t, err, "motion: frame has 57600 bytes, want 58320 (320x180 GRAY8, stride 324): check the size of the frames sent to the detector")
	r, err := d.Process(make([]byte, 324*180))
	require.NoError(t, err)
	require.True(t, r.Warmup)
}

func TestDetectorScenes(t *testing.T) {
	all := scenes()
	tests := []struct {
		scene       string
		sensitivity float64
		// motion is the least share of the frames after warm-up that must report motion;
		// zero means none may.
		motion float64
		// illumination lists the frames that must report an illumination change; no other
		// frame may.
		illumination []int
	}{
		{scene: "static"},
		{scene: "static", sensitivity: 1},
		{scene: "moving square", motion: 1},
		{scene: "dark square", motion: 1},
		{scene: "small slow object", motion: 1},
		{scene: "sensor noise"},
		{scene: "heavy sensor noise"},
		{scene: "heavy sensor noise", sensitivity: 1},
		{scene: "lights on", illumination: []int{20}},
		{scene: "lights on", sensitivity: 1, illumination: []int{20}},
		{scene: "lights off", illumination: []int{20}},
		{scene: "exposure step", sensitivity: 1},
		{scene: "exposure step with a faint square", motion: 1},
		{scene: "IR switch to flat grey", illumination: []int{20}},
		{scene: "IR switch to another view", illumination: []int{20}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s at %v", tt.scene, tt.sensitivity), func(t *testing.T) {
			s, ok := all[tt.scene]
			require.True(t, ok)
			rs := run(t, Options{Sensitivity: tt.sensitivity}, s.frames, s.frame)
			var illum []int
			moving := 0
			for i, r := range rs {
				require.Equal(t, i < warm, r.Warmup, "frame %d", i)
				require.Equal(t, r.Motion, r.Score >= 0.5, "frame %d: score %v", i, r.Score)
				require.True(t, r.Score >= 0 && r.Score < 1 && r.Area >= 0 && r.Area <= 1, "frame %d: %+v", i, r)
				if r.Illumination {
					illum = append(illum, i)
					require.False(t, r.Motion, "frame %d", i)
				}
				if r.Motion {
					moving++
				}
			}
			require.Equal(t, tt.illumination, illum)
			if tt.motion == 0 {
				require.Empty(t, motionFrames(rs))
				return
			}
			// A region counts once it persisted: the first DefaultPersistFrames-1 frames
			// of an arrival are not motion yet.
			require.GreaterOrEqual(t, float64(moving), tt.motion*float64(s.frames-warm-(DefaultPersistFrames-1)), "motion in frames %v", motionFrames(rs))
		})
	}
}

func TestSensitivityIsMonotonic(t *testing.T) {
	all := scenes()
	levels := []float64{0.01, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1}
	differs := false
	for _, name := range []string{"faint square", "small slow object", "heavy sensor noise", "moving square", "exposure step"} {
		s := all[name]
		var prev []Result
		for _, level := range levels {
			rs := run(t, Options{Sensitivity: level}, s.frames, s.frame)
			if prev != nil {
				for i := range rs {
					require.False(t, prev[i].Motion && !rs[i].Motion, "%s, frame %d: motion at a lower sensitivity but not at %v", name, i, level)
				}
				differs = differs || len(motionFrames(rs)) > len(motionFrames(prev))
			}
			prev = rs
		}
	}
	require.True(t, differs, "no scene showed that sensitivity matters")

	// The faint square is invisible to the least sensitive detector and seen by the default.
	faint := all["faint square"]
	require.Empty(t, motionFrames(run(t, Options{Sensitivity: 0.01}, faint.frames, faint.frame)))
	require.NotEmpty(t, motionFrames(run(t, Options{}, faint.frames, faint.frame)))
}

func TestMasksHideMotion(t *testing.T) {
	bg := texture(testW, testH, 5)
	rng := rand.New(rand.NewPCG(11, 12))
	// A timestamp overlay at top left: white digits on black that change every frame.
	stamp := func(i int, f []byte) []byte {
		fillRect(f, testW, 4, 4, 110, 14, 0)
		for c := range 10 {
			if rng.IntN(2) == 0 {
				fillRect(f, testW, 8+c*10, 6, 7, 10, 255)
			}
		}
		return f
	}
	// The stamp and the tree start after warm-up: changes that were there all along are
	// learnt as flicker and are not motion anyway.
	onlyStamp := func(i int) []byte {
		if i < warm {
			return bg
		}
		return stamp(i, append([]byte(nil), bg...))
	}
	stampAndSquare := func(i int) []byte { return stamp(i, withSquare(bg, testW, 8*i, 100, 24, 250)) }
	// A tree that sways in a triangle at the right.
	tree := func(i int) []byte {
		f := append([]byte(nil), bg...)
		if i < warm {
			return f
		}
		for y := 40; y < 170; y++ {
			for x := 230; x < 310; x++ {
				if (x+y+3*i)%7 < 3 {
					f[y*testW+x] = 30
				}
			}
		}
		return f
	}
	tests := []struct {
		name   string
		o      Options
		frame  func(int) []byte
		motion bool
	}{
		{"unmasked timestamp is motion", Options{}, onlyStamp, true},
		{"pixel rectangle", Options{Masks: []Rect{{4, 4, 110, 14}}}, onlyStamp, false},
		{"normalized rectangle", Options{MaskUnits: Normalized, Masks: []Rect{{4.0 / 320, 4.0 / 180, 110.0 / 320, 14.0 / 180}}}, onlyStamp, false},
		{"pixel polygon", Options{MaskPolygons: []Polygon{{{4, 4}, {114, 4}, {114, 18}, {4, 18}}}}, onlyStamp, false},
		{"mask too small", Options{Masks: []Rect{{4, 4, 60, 14}}}, onlyStamp, true},
		{"masked timestamp, square elsewhere", Options{Masks: []Rect{{4, 4, 110, 14}}}, stampAndSquare, true},
		{"unmasked tree is motion", Options{}, tree, true},
		{"normalized tree polygon", Options{MaskUnits: Normalized, MaskPolygons: []Polygon{{{0.7, 0.2}, {0.99, 0.2}, {0.99, 0.97}, {0.7, 0.97}}}}, tree, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := motionFrames(run(t, tt.o, 30, tt.frame))
			if tt.motion {
				require.NotEmpty(t, got)
			} else {
				require.Empty(t, got)
			}
		})
	}
}

func TestBlockMask(t *testing.T) {
	// count returns how many blocks of a 320x180 frame o masks.
	count := func(t *testing.T, o Options) int {
		t.Helper()
		o.Width, o.Height = 320, 180
		m, err := blockMask(o, 80, 45)
		require.NoError(t, err)
		n := 0
		for _, b := range m {
			if b {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name string
		o    Options
		want int
	}{
		{"aligned rectangle", Options{Masks: []Rect{{0, 0, 100, 12}}}, 25 * 3},
		{"same in normalized units", Options{MaskUnits: Normalized, Masks: []Rect{{0, 0, 100.0 / 320, 12.0 / 180}}}, 25 * 3},
		{"one pixel touches one block", Options{Masks: []Rect{{5, 5, 1, 1}}}, 1},
		{"two pixels across a block edge", Options{Masks: []Rect{{3, 5, 2, 1}}}, 2},
		{"clipped at the frame edge", Options{Masks: []Rect{{300, 170, 100, 100}}}, 5 * 3},
		{"overlapping masks", Options{Masks: []Rect{{0, 0, 8, 8}, {4, 4, 8, 8}}}, 4 + 4 - 1},
		{"triangle", Options{MaskPolygons: []Polygon{{{0, 0}, {16, 0}, {0, 16}}}}, 4 + 3 + 2 + 1},
		{"whole frame but a column of blocks", Options{MaskUnits: Normalized, Masks: []Rect{{0, 0, 316.0 / 320, 1}}}, 79 * 45},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, count(t, tt.o))
		})
	}
}

// TestBlockMeans checks the SWAR block sums and the edge paths against a plain loop, on
// sizes that are and are not multiples of the block and of eight.
func TestBlockMeans(t *testing.T) {
	tests := []struct{ w, h, stride int }{
		{320, 180, 320},
		{318, 180, 320},
		{150, 93, 150},
		{4, 4, 4},
		{13, 7, 16},
	}
	for _, tt := range tests {
		rng := rand.New(rand.NewPCG(uint64(tt.w), uint64(tt.h)))
		frame := make([]byte, tt.stride*tt.h)
		for i := range frame {
			frame[i] = byte(rng.IntN(256))
		}
		d, err := NewDetector(Options{Width: tt.w, Height: tt.h, Stride: tt.stride})
		require.NoError(t, err)
		d.differences(frame, 0, 0, false)
		for by := range d.bh {
			for bx := range d.bw {
				sum, n := 0, 0
				for y := by * 4; y < min(by*4+4, tt.h); y++ {
					for x := bx * 4; x < min(bx*4+4, tt.w); x++ {
						sum += int(frame[y*tt.stride+x])
						n++
					}
				}
				require.Equal(t, int32(sum*16/n), d.cur[by*d.bw+bx], "%dx%d block %d,%d", tt.w, tt.h, bx, by)
			}
		}
	}
}

func TestOddSizesAndStride(t *testing.T) {
	tests := []struct{ w, h, stride int }{
		{318, 180, 320},
		{150, 93, 152},
		{64, 36, 64},
	}
	for _, tt := range tests {
		rng := rand.New(rand.NewPCG(1, 1))
		bg := texture(tt.w, tt.h, 3)
		// pad copies rows into a strided frame with garbage in the padding.
		pad := func(f []byte) []byte {
			out := make([]byte, tt.stride*tt.h)
			for y := range tt.h {
				copy(out[y*tt.stride:], f[y*tt.w:(y+1)*tt.w])
				for x := tt.w; x < tt.stride; x++ {
					out[y*tt.stride+x] = byte(rng.IntN(256))
				}
			}
			return out
		}
		o := Options{Width: tt.w, Height: tt.h, Stride: tt.stride}
		still := run(t, o, 30, func(int) []byte { return pad(bg) })
		require.Empty(t, motionFrames(still), "%dx%d static", tt.w, tt.h)
		// After warm-up, a square in the bottom right corner, which holds the partial
		// blocks, comes for three frames and goes for three: from its second frame on, it
		// is motion.
		blinking := run(t, o, 34, func(i int) []byte {
			if i < warm || (i-warm)%6 >= 3 {
				return pad(bg)
			}
			return pad(withSquare(bg, tt.w, tt.w-12, tt.h-12, 12, 250))
		})
		for i := warm; i < len(blinking); i++ {
			if p := (i - warm) % 6; p == 1 || p == 2 {
				require.True(t, blinking[i].Motion, "%dx%d frame %d: %+v", tt.w, tt.h, i, blinking[i])
			}
		}
	}
}

func TestResetLearnsAgain(t *testing.T) {
	a, b := texture(testW, testH, 1), texture(testW, testH, 2)
	d, err := NewDetector(Options{WarmupFrames: 3})
	require.NoError(t, err)
	for range 3 {
		r, err := d.Process(a)
		require.NoError(t, err)
		require.True(t, r.Warmup)
	}
	r, err := d.Process(a)
	require.NoError(t, err)
	require.Equal(t, Result{}, r)

	d.Reset()
	for range 3 {
		r, err := d.Process(b)
		require.NoError(t, err)
		require.True(t, r.Warmup)
	}
	// The new view is the background now: no motion, no illumination change.
	r, err = d.Process(b)
	require.NoError(t, err)
	require.Equal(t, Result{}, r)
}

func TestIlluminationRelearns(t *testing.T) {
	bg := texture(testW, testH, 1)
	lit := mapped(bg, func(v float64) float64 { return v*1.4 + 10 })
	d, err := NewDetector(Options{})
	require.NoError(t, err)
	for range warm {
		_, err := d.Process(bg)
		require.NoError(t, err)
	}
	r, err := d.Process(lit)
	require.NoError(t, err)
	require.Equal(t, Result{Illumination: true}, r)
	// Motion right after the switch is measured against the new background (and counts
	// from its second frame).
	_, err = d.Process(withSquare(lit, testW, 98, 100, 24, 0))
	require.NoError(t, err)
	r, err = d.Process(withSquare(lit, testW, 100, 100, 24, 0))
	require.NoError(t, err)
	require.True(t, r.Motion, "%+v", r)
	require.InDelta(t, 36.0/float64(80*45), r.Area, 16.0/float64(80*45))
}

func TestProcessDoesNotAllocate(t *testing.T) {
	bg := texture(testW, testH, 1)
	frames := [][]byte{bg, withSquare(bg, testW, 50, 50, 30, 250), withSquare(bg, testW, 56, 52, 30, 250),
		mapped(bg, func(v float64) float64 { return v / 2 })}
	for _, o := range []Options{{}, {Masks: []Rect{{0, 0, 100, 20}}, MaskPolygons: []Polygon{{{200, 100}, {300, 100}, {250, 170}}}}} {
		d, err := NewDetector(o)
		require.NoError(t, err)
		for range warm {
			_, err := d.Process(bg)
			require.NoError(t, err)
		}
		i, moving, illum := 0, 0, 0
		allocs := testing.AllocsPerRun(100, func() {
			r, _ := d.Process(frames[i%len(frames)])
			i++
			if r.Motion {
				moving++
			}
			if r.Illumination {
				illum++
			}
		})
		require.Zero(t, allocs)
		// Every path ran: motion, illumination and quiet frames.
		require.Positive(t, moving)
		require.Positive(t, illum)
	}
}

// TestStationaryChangeIsAbsorbed: an object that drives in and parks is motion while it
// moves, not once it stands still, and becomes background after DefaultStationaryFrames
// frames of stillness, so that it is not seen again; when it drives off, that is motion
// again, and the place it leaves is no motion once nothing changes there.
func TestStationaryChangeIsAbsorbed(t *testing.T) {
	bg := texture(testW, testH, 1)
	const arrive, leave = warm + 6, warm + 100
	car := func(x int) []byte { return withSquare(bg, testW, x, 80, 32, 250) }
	rs := run(t, Options{}, warm+200, func(i int) []byte {
		switch {
		case i < warm:
			return bg
		case i < arrive: // driving in
			return car(20 + 20*(i-warm))
		case i < leave: // parked
			return car(20 + 20*(arrive-warm))
		case i < leave+6: // driving off
			return car(20 + 20*(arrive-warm) + 20*(i-leave+1))
		}
		return bg
	})
	for i := warm + DefaultPersistFrames - 1; i < arrive; i++ {
		require.True(t, rs[i].Motion, "frame %d: the arrival is motion", i)
	}
	for i := arrive + freshFrames + 1; i < leave; i++ {
		require.False(t, rs[i].Motion, "frame %d: a parked car is no motion", i)
	}
	require.True(t, rs[leave+DefaultPersistFrames-1].Motion, "leaving is motion again")
	for i := leave + 8; i < warm+200; i++ {
		require.False(t, rs[i].Motion, "frame %d: the place it left is no motion", i)
	}
}

// TestMarkedListsNonZero: marked lists exactly the non-zero entries, in order, for any
// length and any non-zero values.
func TestMarkedListsNonZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for range 500 {
		cs := make([]uint8, rng.IntN(100))
		for i := range cs {
			if rng.IntN(4) == 0 {
				cs[i] = uint8(1 + rng.IntN(255))
			}
		}
		var want []int32
		for i, c := range cs {
			if c != 0 {
				want = append(want, int32(i))
			}
		}
		require.Equal(t, want, marked(nil, cs), "%v", cs)
	}
}
