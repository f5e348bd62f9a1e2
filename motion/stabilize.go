package motion

import "math"

// stabilizer measures how far the whole picture moved against the background (a camera on
// a pole in the wind, vibration): it compares the gradients of the frame's column and row
// sums with those of a reference taken in the background's position, within a few pixels.
// Gradients of projections ignore a brightness offset and average out sensor noise and
// small moving objects.
type stabilizer struct {
	w, h int
	// fused: the projections come from the block pass (differences), over the full
	// 8-pixel words of the full rows of blocks; otherwise project reads the frame.
	fused bool
	// acc sums pixels per column in 16-bit lanes (see flush), flushed into col every
	// flushRows rows.
	acc      []uint64
	col, row []int32 // projections of the current frame
	// gc, gr are the current gradients, rc, rr the reference's (background position).
	gc, gr, rc, rr []int32
	sx, sy         int // the last estimate
}

// flushRows rows of 255 fit a 16-bit lane.
const flushRows = 256

func newStabilizer(w, h int) stabilizer {
	fused := w <= 1024 && w >= 16 && h >= 8
	if fused {
		w, h = w&^7, h&^(blk-1)
	}
	return stabilizer{
		w: w, h: h, fused: fused,
		acc: make([]uint64, (w/8)*2),
		col: make([]int32, w), row: make([]int32, h),
		gc: make([]int32, w-1), gr: make([]int32, h-1),
		rc: make([]int32, w-1), rr: make([]int32, h-1),
	}
}

// gradients finishes the projections of the block pass (fused).
func (s *stabilizer) gradients() {
	s.flush(s.acc)
	s.grad()
}

// grad computes the gradients of the projections.
func (s *stabilizer) grad() {
	diff(s.gc, s.col)
	diff(s.gr, s.row)
}

// diff sets g[i] to p[i+1] - p[i]; p is one longer than g.
func diff(g, p []int32) {
	p = p[:len(g)+1]
	for i := range g {
		g[i] = p[i+1] - p[i]
	}
}

// project computes the column and row sums of frame and their gradients.
func (s *stabilizer) project(frame []byte, stride int) {
	w, h := s.w, s.h
	wide := w &^ 7
	acc := s.acc[:wide/4]
	clear(acc)
	clear(s.col)
	for y := range h {
		line := frame[y*stride : y*stride+w]
		var rs, total uint64
		for x, i := 0, 0; x+8 <= wide; x, i = x+8, i+2 {
			v := load64(line[x : x+8])
			e, y := v&lanes8, v>>8
			acc[i] += e
			acc[i+1] += y
			rs += e + y&lanes8
			if x&0x3f8 == 0x3f8 { // keep the row lanes within 16 bits on wide frames
				total += fold(rs)
				rs = 0
			}
		}
		sum := int32(total + fold(rs))
		for x := wide; x < w; x++ {
			sum += int32(line[x])
			s.col[x] += int32(line[x])
		}
		s.row[y] = sum
		if y%flushRows == flushRows-1 || y == h-1 {
			s.flush(acc)
		}
	}
	s.grad()
}

// fold adds the four 16-bit lanes of v.
func fold(v uint64) uint64 {
	v = v&lanes16 + v>>16&lanes16
	return v&0xffffffff + v>>32
}

// flush moves the column lanes into col and clears them. For each 8 columns acc holds
// E, the even columns' sums in 16-bit lanes, and Y, the sum of the words shifted down 8
// bits (see odd): at most flushRows rows of 255 keep both exact.
func (s *stabilizer) flush(acc []uint64) {
	for i := 0; i < len(acc); i += 2 {
		e, o := acc[i], odd(acc[i], acc[i+1])
		x := i * 4
		col := s.col[x : x+8]
		col[0] += int32(e & 0xffff)
		col[1] += int32(o & 0xffff)
		col[2] += int32(e >> 16 & 0xffff)
		col[3] += int32(o >> 16 & 0xffff)
		col[4] += int32(e >> 32 & 0xffff)
		col[5] += int32(o >> 32 & 0xffff)
		col[6] += int32(e >> 48)
		col[7] += int32(o >> 48)
	}
	clear(acc)
}

// setReference makes the current frame the background's position.
func (s *stabilizer) setReference() {
	copy(s.rc, s.gc)
	copy(s.rr, s.gr)
	s.sx, s.sy = 0, 0
}

// estimate returns the shift of the current frame against the reference, each way within
// ±r pixels: content at x in the reference is at x+sx in the frame.
func (s *stabilizer) estimate(r int) (sx, sy int) {
	s.sx = bestShift(s.gc, s.rc, r)
	s.sy = bestShift(s.gr, s.rr, r)
	return s.sx, s.sy
}

// update moves the reference towards the current frame aligned by (sx, sy): fully after
// an illumination change, slowly otherwise, so that it follows a changing scene.
func (s *stabilizer) update(sx, sy int, full bool) {
	shiftToward(s.rc, s.gc, sx, full)
	shiftToward(s.rr, s.gr, sy, full)
}

func shiftToward(ref, cur []int32, sh int, full bool) {
	n := min(len(ref), len(cur))
	lo, hi := max(0, -sh), min(n, n-sh)
	if lo >= hi {
		return
	}
	r, c := ref[lo:hi], cur[lo+sh:hi+sh]
	c = c[:len(r)]
	if full {
		copy(r, c)
		return
	}
	for x, v := range c {
		r[x] += (v - r[x]) >> 4
	}
}

// bestShift returns the s in [-r, r] for which cur[x+s] matches ref[x] best (least sum of
// absolute differences over the middle), or 0 unless it matches clearly better than 0. A
// clear minimum at 0 (a still camera) ends the search early; otherwise the whole range is
// searched: vibration jumps.
func bestShift(cur, ref []int32, r int) int {
	n := len(ref)
	if n < 4*r+8 {
		return 0
	}
	rf := ref[r : n-r]
	// sad is the whole sum up to below; at or above it, the sum or more.
	sad := func(s int, below int64) int64 { return sadInt32(cur[r+s:n-r+s], rf, below) }
	const all = math.MaxInt64
	sad0 := sad(0, all)
	best, bestSAD := 0, sad0
	// Beyond 2·sad0 a sum only has to be known to be that large: neither it nor the
	// order of the search below depends on more (a clear minimum at 0 ends the search).
	left, right := sad(-1, 2*sad0+1), sad(1, 2*sad0+1)
	if 2*sad0 < min(left, right) {
		return 0
	}
	if left < sad0 || right < sad0 {
		best, bestSAD = -1, left
		if right < left {
			best, bestSAD = 1, right
		}
	}
	// Search outwards on the side that fell first, then the other: the minimum is found
	// early and the other sums stop soon after they start. Ties go as an ascending
	// search would take them: to 0, then to the smaller shift. A sum that reaches
	// bestSAD (bestSAD+1 where a tie would win) loses: sad stops there.
	first := -1
	if right < left {
		first = 1
	}
	for _, dir := range [2]int{first, -first} {
		for a := 2; a <= r; a++ {
			s := dir * a
			below := bestSAD
			if best != 0 && s < best {
				below++
			}
			if v := sad(s, below); v < below {
				best, bestSAD = s, v
			}
		}
	}
	// Noise and a moving object move the minimum a little on a still camera.
	if best != 0 && bestSAD*8 > sad0*7 {
		return 0
	}
	return best
}

// sadInt32 returns the sum of the absolute differences of a and b over the shorter,
// sixteen at a time; once the sum reaches below it returns what it has summed so far (at
// least below). Sixteen differences of projection gradients (at most 2·4096·255 each)
// fit the 32-bit partial sums.
func sadInt32(a, b []int32, below int64) int64 {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	var s int64
	for len(a) >= 16 && len(b) >= 16 {
		x, y := (*[16]int32)(a), (*[16]int32)(b)
		s0 := abs(x[0]-y[0]) + abs(x[4]-y[4]) + abs(x[8]-y[8]) + abs(x[12]-y[12])
		s1 := abs(x[1]-y[1]) + abs(x[5]-y[5]) + abs(x[9]-y[9]) + abs(x[13]-y[13])
		s2 := abs(x[2]-y[2]) + abs(x[6]-y[6]) + abs(x[10]-y[10]) + abs(x[14]-y[14])
		s3 := abs(x[3]-y[3]) + abs(x[7]-y[7]) + abs(x[11]-y[11]) + abs(x[15]-y[15])
		s += int64(s0+s1) + int64(s2+s3)
		a, b = a[16:], b[16:]
		if s >= below {
			return s
		}
	}
	for i := range min(len(a), len(b)) {
		s += int64(abs(a[i] - b[i]))
	}
	return s
}
