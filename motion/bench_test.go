package motion

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkDetector measures one 320x180 frame with a square moving across a noisy textured
// background, after warm-up, with a timestamp mask as a real configuration would have and
// every stage on: the block pass that also gives the shake projections, the shift search
// (which ends early on a still camera), tone curve, noise floor, flicker, regions,
// persistence. Besides ns/op it reports cpu-ns/op, the process's CPU time per frame, which
// a loaded machine inflates far less than the wall time; compare implementations in the
// same run. Target: 50 µs a frame or less, 0 allocations (see the README for figures).
func BenchmarkDetector(b *testing.B) {
	d, err := NewDetector(Options{Masks: []Rect{{X: 0, Y: 0, W: 120, H: 12}}})
	if err != nil {
		b.Fatal(err)
	}
	bg := texture(testW, testH, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	frames := make([][]byte, 16)
	for i := range frames {
		// Sensor noise makes the signs of the differences random, as on a real camera.
		frames[i] = noisy(withSquare(bg, testW, 20*i, 80, 24, 250), rng, 3)
	}
	for range DefaultWarmupFrames {
		if _, err := d.Process(bg); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(bg)))
	b.ReportAllocs()
	i, moving := 0, 0
	cpu := processCPU()
	for b.Loop() {
		r, err := d.Process(frames[i%len(frames)])
		if err != nil {
			b.Fatal(err)
		}
		if r.Motion {
			moving++
		}
		i++
	}
	reportCPU(b, cpu)
	if moving == 0 {
		b.Fatal("the moving square was never detected")
	}
}

// BenchmarkDetectorShake measures a 320x180 frame of a camera that shakes by up to 3 pixels
// every frame, with a square crossing: every stage runs (projections, the whole shift
// search and its check, block means read at the shift, tone curve, regions, following). It
// is the worst case: the shift jumps at random, so the search cannot end early, and a
// shaking camera is read twice (projections, then blocks at the shift).
func BenchmarkDetectorShake(b *testing.B) {
	const m = 8
	d, err := NewDetector(Options{Masks: []Rect{{X: 0, Y: 0, W: 120, H: 12}}})
	if err != nil {
		b.Fatal(err)
	}
	big := texture(testW+2*m, testH+2*m, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	offsets := [][2]int{{0, 0}, {2, 1}, {-3, 0}, {1, -2}, {3, 3}, {-1, 2}, {0, -3}, {-2, -1}}
	frames := make([][]byte, 16)
	for i := range frames {
		o := offsets[i%len(offsets)]
		f := window(big, testW+2*m, m+o[0], m+o[1], testW, testH)
		fillRect(f, testW, 20*i, 80, 24, 24, 250)
		frames[i] = noisy(f, rng, 3)
	}
	still := window(big, testW+2*m, m, m, testW, testH)
	for range DefaultWarmupFrames {
		if _, err := d.Process(still); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(still)))
	b.ReportAllocs()
	i, moving, shifted := 0, 0, 0
	cpu := processCPU()
	for b.Loop() {
		r, err := d.Process(frames[i%len(frames)])
		if err != nil {
			b.Fatal(err)
		}
		if r.Motion {
			moving++
		}
		if r.ShiftX != 0 || r.ShiftY != 0 {
			shifted++
		}
		i++
	}
	reportCPU(b, cpu)
	if moving == 0 || shifted == 0 {
		b.Fatalf("motion in %d and shift in %d of %d frames", moving, shifted, i)
	}
}
