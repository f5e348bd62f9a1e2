package motion

import (
	"math/rand/v2"
)

// Synthetic scenes for the tests and the benchmark: a textured background and things drawn
// on copies of it.

const (
	testW, testH = DefaultWidth, DefaultHeight
)

// texture returns a w x h background of 2x2-pixel cells with grey levels in 40..200, the
// same for the same seed.
func texture(w, h int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	f := make([]byte, w*h)
	for y := 0; y < h; y += 2 {
		for x := 0; x < w; x += 2 {
			v := byte(40 + rng.IntN(161))
			for dy := range min(2, h-y) {
				for dx := range min(2, w-x) {
					f[(y+dy)*w+x+dx] = v
				}
			}
		}
	}
	return f
}

// withSquare returns a copy of bg with a size x size square of grey level v at x, y
// (clipped to the frame).
func withSquare(bg []byte, w, x, y, size int, v byte) []byte {
	f := append([]byte(nil), bg...)
	fillRect(f, w, x, y, size, size, v)
	return f
}

// fillRect paints a rectangle, clipped to the frame.
func fillRect(f []byte, w, x, y, rw, rh int, v byte) {
	h := len(f) / w
	for yy := max(y, 0); yy < min(y+rh, h); yy++ {
		for xx := max(x, 0); xx < min(x+rw, w); xx++ {
			f[yy*w+xx] = v
		}
	}
}

// mapped returns a copy of f with every pixel passed through fn.
func mapped(f []byte, fn func(v float64) float64) []byte {
	out := make([]byte, len(f))
	for i, v := range f {
		out[i] = clampByte(fn(float64(v)))
	}
	return out
}

// noisy returns a copy of f with Gaussian noise of standard deviation sigma.
func noisy(f []byte, rng *rand.Rand, sigma float64) []byte {
	return mapped(f, func(v float64) float64 { return v + rng.NormFloat64()*sigma })
}

func clampByte(v float64) byte {
	return byte(min(max(v+0.5, 0), 255))
}

// flat returns a w x h frame of one grey level.
func flat(w, h int, v byte) []byte {
	f := make([]byte, w*h)
	for i := range f {
		f[i] = v
	}
	return f
}
