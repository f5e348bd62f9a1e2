package motion

import (
	"fmt"
	"math"
)

// Units says how mask coordinates are measured.
type Units int

const (
	// Pixels measures from the top-left corner of the frame in pixels.
	Pixels Units = iota
	// Normalized measures in fractions of the frame's width and height (0..1), so that a
	// mask survives a change of the motion frame size.
	Normalized
)

// String returns "pixels" or "normalized".
func (u Units) String() string {
	switch u {
	case Pixels:
		return "pixels"
	case Normalized:
		return "normalized"
	}
	return fmt.Sprintf("Units(%d)", int(u))
}

// Rect is an axis-aligned rectangle with its top-left corner at X, Y.
type Rect struct{ X, Y, W, H float64 }

// Point is a polygon vertex.
type Point struct{ X, Y float64 }

// Polygon is a closed polygon: the last vertex joins the first. Self-intersecting polygons
// follow the even-odd rule.
type Polygon []Point

// blockMask returns, for every block, whether a mask in o covers any of its pixels. A mask
// covers a pixel when it contains the pixel's centre.
func blockMask(o Options, bw, bh int) ([]bool, error) {
	var sx, sy float64
	switch o.MaskUnits {
	case Pixels:
		sx, sy = 1, 1
	case Normalized:
		sx, sy = float64(o.Width), float64(o.Height)
	default:
		return nil, fmt.Errorf("motion: mask units %v are unknown: use Pixels or Normalized", o.MaskUnits)
	}
	masked := make([]bool, bw*bh)
	for n, r := range o.Masks {
		if !finite(r.X, r.Y, r.W, r.H) || r.W <= 0 || r.H <= 0 {
			return nil, fmt.Errorf("motion: mask rectangle %d %+v is invalid: width and height must be positive numbers", n+1, r)
		}
		// Pixel p is covered when X <= p+0.5 < X+W.
		x0, x1 := coveredSpan(r.X*sx, (r.X+r.W)*sx, o.Width)
		y0, y1 := coveredSpan(r.Y*sy, (r.Y+r.H)*sy, o.Height)
		if x0 >= x1 || y0 >= y1 {
			return nil, fmt.Errorf("motion: mask rectangle %d %+v in %v covers no pixel of the %dx%d frame: check its coordinates and the mask units",
				n+1, r, o.MaskUnits, o.Width, o.Height)
		}
		for by := y0 / blk; by <= (y1-1)/blk; by++ {
			for bx := x0 / blk; bx <= (x1-1)/blk; bx++ {
				masked[by*bw+bx] = true
			}
		}
	}
	for n, p := range o.MaskPolygons {
		if len(p) < 3 {
			return nil, fmt.Errorf("motion: mask polygon %d has %d points: a polygon needs at least 3", n+1, len(p))
		}
		scaled := make(Polygon, len(p))
		minX, minY := math.Inf(1), math.Inf(1)
		maxX, maxY := math.Inf(-1), math.Inf(-1)
		for i, v := range p {
			if !finite(v.X, v.Y) {
				return nil, fmt.Errorf("motion: mask polygon %d point %d %+v is not a finite number", n+1, i+1, v)
			}
			s := Point{v.X * sx, v.Y * sy}
			scaled[i] = s
			minX, maxX = min(minX, s.X), max(maxX, s.X)
			minY, maxY = min(minY, s.Y), max(maxY, s.Y)
		}
		x0, x1 := coveredSpan(minX, maxX, o.Width)
		y0, y1 := coveredSpan(minY, maxY, o.Height)
		covered := false
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				if scaled.contains(float64(x)+0.5, float64(y)+0.5) {
					masked[(y/blk)*bw+x/blk] = true
					covered = true
				}
			}
		}
		if !covered {
			return nil, fmt.Errorf("motion: mask polygon %d %+v in %v covers no pixel of the %dx%d frame: check its coordinates and the mask units",
				n+1, p, o.MaskUnits, o.Width, o.Height)
		}
	}
	return masked, nil
}

// coveredSpan returns the pixels [p0, p1) whose centres lie in [lo, hi), clipped to [0, n).
func coveredSpan(lo, hi float64, n int) (p0, p1 int) {
	a := math.Ceil(lo - 0.5)
	b := math.Ceil(hi - 0.5)
	a = min(max(a, 0), float64(n))
	b = min(max(b, 0), float64(n))
	return int(a), int(b)
}

// contains reports whether (x, y) lies inside p by the even-odd rule.
func (p Polygon) contains(x, y float64) bool {
	in := false
	j := len(p) - 1
	for i := range p {
		a, b := p[i], p[j]
		if (a.Y > y) != (b.Y > y) && x < (b.X-a.X)*(y-a.Y)/(b.Y-a.Y)+a.X {
			in = !in
		}
		j = i
	}
	return in
}

// finite reports whether every value is a number other than an infinity.
func finite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
