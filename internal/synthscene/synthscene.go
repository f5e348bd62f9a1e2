// Package synthscene renders deterministic outdoor test scenes for motion detection: a
// textured background (seeded value noise with a few hard structures) and the things that
// trouble a motion detector outdoors — camera sway, fine rain, coarse rain or snow, a bush
// in the wind, car headlights sweeping a wall at night, cloud shadows — with or without a
// real object, plus a small distant person and a cat-sized animal. Frames are 8-bit luma;
// the same scene and frame number always give the same bytes.
package synthscene

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Interval is a labelled span of motion, in seconds.
type Interval struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// Scene describes one clip.
type Scene struct {
	Name   string
	Kind   string // the phenomenon: sway, rain-fine, rain-coarse, foliage, headlights, clouds, person-small, cat, quiet
	W, H   int
	FPS    int
	Frames int
	// Object is the real object, if any: walker (a person crossing), small (a distant
	// person), cat; Labels are the times it moves in view.
	Object string
	Labels []Interval
	Seed   uint64
}

// Suite returns the outdoor clip suite: every phenomenon without and with a real object.
func Suite() []Scene {
	const w, h, fps, secs = 640, 360, 10, 36
	base := Scene{W: w, H: h, FPS: fps, Frames: secs * fps}
	var out []Scene
	add := func(name, kind, object string, labels ...Interval) {
		s := base
		s.Name, s.Kind, s.Object, s.Labels = name, kind, object, labels
		if s.Labels == nil {
			s.Labels = []Interval{}
		}
		s.Seed = uint64(len(out) + 1)
		out = append(out, s)
	}
	for _, kind := range []string{"sway", "rain-fine", "rain-coarse", "foliage", "headlights", "clouds"} {
		add("outdoor-"+kind, kind, "")
		span := Interval{14, 22}
		if kind == "rain-fine" || kind == "rain-coarse" {
			span = Interval{14, 19}
		}
		add("outdoor-"+kind+"-object", kind, "walker", span)
	}
	add("outdoor-quiet", "quiet", "")
	add("outdoor-person-small", "quiet", "small", Interval{12, 24})
	add("outdoor-cat", "quiet", "cat", Interval{14, 19})
	return out
}

// Find returns the suite's scene called name.
func Find(name string) (Scene, error) {
	for _, s := range Suite() {
		if s.Name == name {
			return s, nil
		}
	}
	return Scene{}, fmt.Errorf("synthscene: no scene %q", name)
}

// margin is how far the background extends beyond the frame, for sway.
const margin = 8

// Renderer draws the frames of one scene.
type Renderer struct {
	s      Scene
	bw, bh int
	bg     []float32 // reflectance of the background, (W+2·margin) x (H+2·margin)
	leaves []float32 // the bush's texture, same size
	lum    []float32 // scratch: the frame before noise
}

// NewRenderer prepares a scene's background.
func NewRenderer(s Scene) *Renderer {
	r := &Renderer{s: s, bw: s.W + 2*margin, bh: s.H + 2*margin}
	rng := rand.New(rand.NewPCG(s.Seed, 7))
	r.bg = make([]float32, r.bw*r.bh)
	r.lum = make([]float32, s.W*s.H)
	octaves := []struct {
		cell int
		amp  float32
	}{{96, 45}, {32, 30}, {10, 20}, {3, 12}}
	for _, o := range octaves {
		addNoise(r.bg, r.bw, r.bh, o.cell, o.amp, rng)
	}
	for i := range r.bg {
		r.bg[i] += 110
	}
	// Hard structures: a building with windows, a fence, a pole.
	x0, y0 := 60+rng.IntN(80), 40+rng.IntN(30)
	for y := y0; y < y0+150; y++ {
		for x := x0; x < x0+220; x++ {
			v := float32(40)
			if (x-x0)%40 > 8 && (x-x0)%40 < 30 && (y-y0)%50 > 10 && (y-y0)%50 < 35 {
				v = -50 // windows
			}
			r.bg[y*r.bw+x] += v
		}
	}
	for y := 250; y < 262; y++ {
		for x := 0; x < r.bw; x++ {
			r.bg[y*r.bw+x] += 35
		}
	}
	for y := 262; y < 300; y++ {
		for x := 0; x < r.bw; x += 18 {
			for dx := 0; dx < 3 && x+dx < r.bw; dx++ {
				r.bg[y*r.bw+x+dx] += 35
			}
		}
	}
	px := 400 + rng.IntN(100)
	for y := 20; y < 300; y++ {
		for x := px; x < px+6; x++ {
			r.bg[y*r.bw+x] = 35
		}
	}
	if s.Kind == "headlights" { // a brick wall fills the night view
		for y := range r.bh {
			for x := range r.bw {
				bx := (x + (y/14%2)*14) % 28
				v := float32(150)
				if y%14 < 2 || bx < 2 {
					v = 70
				}
				r.bg[y*r.bw+x] = v + r.bg[y*r.bw+x]*0.3 - 33
			}
		}
	}
	if s.Kind == "foliage" {
		r.leaves = make([]float32, r.bw*r.bh)
		addNoise(r.leaves, r.bw, r.bh, 6, 70, rng)
		addNoise(r.leaves, r.bw, r.bh, 2, 30, rng)
		for i := range r.leaves {
			r.leaves[i] += 80
		}
	}
	for i, v := range r.bg {
		r.bg[i] = min(max(v, 5), 250)
	}
	return r
}

// addNoise adds value noise of the given cell size and amplitude (smoothly interpolated
// random values on a grid).
func addNoise(dst []float32, w, h, cell int, amp float32, rng *rand.Rand) {
	gw, gh := w/cell+2, h/cell+2
	grid := make([]float32, gw*gh)
	for i := range grid {
		grid[i] = (rng.Float32()*2 - 1) * amp
	}
	for y := range h {
		gy, fy := y/cell, smooth(float32(y%cell)/float32(cell))
		for x := range w {
			gx, fx := x/cell, smooth(float32(x%cell)/float32(cell))
			a := grid[gy*gw+gx]*(1-fx) + grid[gy*gw+gx+1]*fx
			b := grid[(gy+1)*gw+gx]*(1-fx) + grid[(gy+1)*gw+gx+1]*fx
			dst[y*w+x] += a*(1-fy) + b*fy
		}
	}
}

func smooth(t float32) float32 { return t * t * (3 - 2*t) }

// sample reads a background-sized image at a fractional position, bilinearly.
func (r *Renderer) sample(img []float32, x, y float64) float32 {
	x = min(max(x, 0), float64(r.bw-2))
	y = min(max(y, 0), float64(r.bh-2))
	ix, iy := int(x), int(y)
	fx, fy := float32(x-float64(ix)), float32(y-float64(iy))
	i := iy*r.bw + ix
	a := img[i]*(1-fx) + img[i+1]*fx
	b := img[i+r.bw]*(1-fx) + img[i+r.bw+1]*fx
	return a*(1-fy) + b*fy
}

// Frame renders frame i as W x H bytes of luma into y (allocated when nil) and returns it.
func (r *Renderer) Frame(i int, y []byte) []byte {
	s := r.s
	if y == nil {
		y = make([]byte, s.W*s.H)
	}
	t := float64(i) / float64(s.FPS)
	rng := rand.New(rand.NewPCG(s.Seed, uint64(i)+1000))
	// Camera sway: a pole in the wind, 1-3 pixels, sub-pixel smooth.
	var ox, oy float64
	if s.Kind == "sway" {
		ox = 2.2*math.Sin(2*math.Pi*0.7*t) + 0.8*math.Sin(2*math.Pi*1.9*t+1)
		oy = 1.4*math.Sin(2*math.Pi*0.5*t+0.3) + 0.5*math.Sin(2*math.Pi*1.3*t)
	}
	for py := range s.H {
		if ox == 0 && oy == 0 { // a still camera: the background as it is
			copy(r.lum[py*s.W:(py+1)*s.W], r.bg[(py+margin)*r.bw+margin:])
			continue
		}
		for px := range s.W {
			r.lum[py*s.W+px] = r.sample(r.bg, float64(px+margin)+ox, float64(py+margin)+oy)
		}
	}
	if s.Kind == "foliage" { // a bush in the bottom right corner, swaying locally
		cx, cy, rx, ry := 540.0, 285.0, 95.0, 75.0
		for py := int(cy - ry - 8); py < min(s.H, int(cy+ry+8)); py++ {
			for px := int(cx - rx - 8); px < min(s.W, int(cx+rx+8)); px++ {
				dx := 5*math.Sin(2*math.Pi*0.8*t+float64(py)/40) + 2*math.Sin(2*math.Pi*2.1*t+float64(px)/25)
				dy := 2 * math.Sin(2*math.Pi*0.6*t+float64(px)/50)
				// The bush bends more at the top.
				bend := min(max((cy+ry-float64(py))/(2*ry), 0), 1)
				qx, qy := float64(px)-dx*bend, float64(py)-dy*bend
				if (qx-cx)*(qx-cx)/(rx*rx)+(qy-cy)*(qy-cy)/(ry*ry) <= 1 {
					r.lum[py*s.W+px] = r.sample(r.leaves, qx+margin, qy+margin)
				}
			}
		}
	}
	r.drawObject(t, ox, oy)
	switch s.Kind {
	case "headlights":
		// Night: the wall is dim; two cars' headlights sweep across it.
		for k := range r.lum {
			r.lum[k] *= 0.35
		}
		for _, c := range []float64{5, 24} {
			if t < c || t > c+3.5 {
				continue
			}
			hx := -150 + (t-c)/3.5*940
			for py := range s.H {
				gy := (float64(py) - 200) / 90
				for px := range s.W {
					gx := (float64(px) - hx) / 130
					g := 8 * math.Exp(-(gx*gx+gy*gy)/2)
					r.lum[py*s.W+px] *= float32(1 + g)
				}
			}
		}
	case "clouds":
		// Two soft cloud shadows drifting across.
		for _, c := range []struct{ x0, y, v, rad, depth float64 }{{-250, 120, 22, 170, 0.45}, {800, 280, -15, 140, 0.35}} {
			cx := c.x0 + c.v*t
			for py := range s.H {
				dy := float64(py) - c.y
				for px := range s.W {
					dx := float64(px) - cx
					r.lum[py*s.W+px] *= float32(1 - c.depth*math.Exp(-(dx*dx+dy*dy)/(2*c.rad*c.rad)))
				}
			}
		}
	}
	for k, v := range r.lum {
		v += float32(rng.NormFloat64() * 2) // sensor noise
		y[k] = byte(min(max(v+0.5, 0), 255))
	}
	switch s.Kind {
	case "rain-fine": // a few hundred 2x2 bright drops, new every frame
		for range 350 {
			x, yy := rng.IntN(s.W-2), rng.IntN(s.H-2)
			for d := range 4 {
				k := (yy+d/2)*s.W + x + d%2
				y[k] = byte(min(int(y[k])+70, 255))
			}
		}
	case "rain-coarse": // about 85 4x4 snowflakes, new every frame
		for range 85 {
			x, yy := rng.IntN(s.W-4), rng.IntN(s.H-4)
			for d := range 16 {
				y[(yy+d/4)*s.W+x+d%4] = 235
			}
		}
	}
	return y
}

// drawObject draws the scene's real object at time t, shifted with the camera.
func (r *Renderer) drawObject(t, ox, oy float64) {
	s := r.s
	if s.Object == "" || len(s.Labels) == 0 {
		return
	}
	l := s.Labels[0]
	if t < l.Start || t >= l.End {
		return
	}
	f := (t - l.Start) / (l.End - l.Start)
	box := func(x, y, w, h float64, v float32) {
		for py := max(0, int(y-oy)); py < min(s.H, int(y-oy+h)); py++ {
			for px := max(0, int(x-ox)); px < min(s.W, int(x-ox+w)); px++ {
				r.lum[py*s.W+px] = v
			}
		}
	}
	switch s.Object {
	case "walker": // a person 36x90 px crossing the view
		x := 80 + f*420
		y := 170.0
		box(x+10, y, 16, 16, 185) // head
		box(x, y+16, 36, 40, 70)  // jacket
		box(x+4, y+24, 6, 20, 95) // a stripe
		leg := 6 * math.Sin(2*math.Pi*1.5*t)
		box(x+4+leg, y+56, 12, 34, 45)
		box(x+20-leg, y+56, 12, 34, 45)
	case "small": // a distant person, 7x16 px, walking slowly
		x := 150 + f*260
		box(x+1, 200, 5, 5, 190)
		box(x, 205, 7, 11, 50)
	case "cat": // a cat-sized animal trotting along the fence
		x := 60 + f*480
		box(x, 286, 26, 12, 40)
		box(x+22, 281, 8, 8, 40)
	}
}
