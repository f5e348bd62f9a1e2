package motion

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkDetector measures one 320x180 frame with a square moving across a noisy textured
// background, after warm-up, with a timestamp mask as a real configuration would have.
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
	if moving == 0 {
		b.Fatal("the moving square was never detected")
	}
}
