package motion

// Masks for the SWAR block sums: bytes into 16-bit lanes, 16-bit lanes into 32-bit lanes.
const (
	lanes8  = 0x00ff00ff00ff00ff
	lanes16 = 0x0000ffff0000ffff
)

// differences sets d.cur to every block's mean, reading the frame
// sx, sy pixels from the block's place (the compensated camera shift). Blocks whose pixels
// would fall outside the frame are set to invalid. Full rows of blocks go through
// blockRow; without a shift, the right and bottom edges, when the size is not a multiple
// of the block, go pixel by pixel.
func (d *Detector) differences(frame []byte, sx, sy int, project bool) {
	w, h, stride, bw := d.w, d.h, d.stride, d.bw
	st := &d.stab
	if project {
		clear(st.acc)
		clear(st.col)
	}
	// Blocks j0 <= j < j1 lie wholly inside the frame at the offset.
	j0 := 0
	if sx < 0 {
		j0 = (-sx + blk - 1) / blk
	}
	j1 := min((w-sx)/blk, w/blk)
	pairsEnd := j0 + (j1-j0)&^1
	for by := range d.bh {
		y0 := by*blk + sy
		res := d.cur[by*bw : by*bw+bw]
		if y0 < 0 || y0+blk > h {
			if sy == 0 {
				d.edgeRow(frame, y0, res)
			} else {
				for j := range res {
					res[j] = invalid
				}
			}
			continue
		}
		o := y0 * stride
		for j := range j0 {
			res[j] = invalid
		}
		// The whole pairs of blocks, as four rows of pixels.
		p0, p1 := o+j0*blk+sx, o+pairsEnd*blk+sx
		r0 := frame[p0:p1]
		r1 := frame[p0+stride : p1+stride]
		r2 := frame[p0+2*stride : p1+2*stride]
		r3 := frame[p0+3*stride : p1+3*stride]
		if project {
			// Without a shift, the same loads give the projections for the shake
			// estimate: column sums in lanes, row sums per row.
			// Columns are summed over every other row of blocks: enough to average out
			// noise, and half the work.
			row := st.row[y0 : y0+4]
			if by&1 == 0 {
				e, y := blockRowProject(res[j0:pairsEnd], r0, r1, r2, r3, st.acc)
				for i := range row {
					row[i] = rowSum(e[i], y[i])
				}
			} else {
				sums := blockRowRows(res[j0:pairsEnd], r0, r1, r2, r3)
				for i := range row {
					row[i] = int32(fold(sums[i]))
				}
			}
			if by%128 == 127 {
				st.flush(st.acc)
			}
		} else {
			blockRow(res[j0:pairsEnd], r0, r1, r2, r3)
		}
		for j := pairsEnd; j < bw; j++ {
			x0 := j*blk + sx
			switch {
			case j < j1:
				res[j] = blockSum(frame, stride, x0, y0) // a whole block: its mean
			case sx != 0 || x0 >= w:
				res[j] = invalid
			default: // the right edge without a shift, narrower than a block
				var sum int32
				for x := x0; x < w; x++ {
					for i := range blk {
						sum += int32(frame[o+i*stride+x])
					}
				}
				res[j] = sum * unit / int32((w-x0)*blk)
			}
		}
	}
}

// projections computes only the projections that differences(frame, 0, 0, true) would:
// on a shaking camera the blocks are read once, at the shift those projections give.
func (d *Detector) projections(frame []byte) {
	w, stride := d.w, d.stride
	st := &d.stab
	clear(st.acc)
	clear(st.col)
	wide := (w / blk &^ 1) * blk // the pairs of whole blocks, as in differences
	for by := range d.h / blk {
		o := by * blk * stride
		r0 := frame[o : o+wide]
		r1 := frame[o+stride : o+stride+wide]
		r2 := frame[o+2*stride : o+2*stride+wide]
		r3 := frame[o+3*stride : o+3*stride+wide]
		row := st.row[by*blk : by*blk+4]
		if by&1 == 0 {
			e, y := projectCols(r0, r1, r2, r3, st.acc)
			for i := range row {
				row[i] = rowSum(e[i], y[i])
			}
		} else {
			e0, y0, e1, y1 := projectRows(r0, r1)
			e2, y2, e3, y3 := projectRows(r2, r3)
			row[0], row[1], row[2], row[3] = rowSum(e0, y0), rowSum(e1, y1), rowSum(e2, y2), rowSum(e3, y3)
		}
		if by%128 == 127 {
			st.flush(st.acc)
		}
	}
}

// The kernels below sum bytes in 16-bit lanes without a second mask: for words v, E = Σ
// v&lanes8 holds the even bytes' sums and Y = Σ v>>8 is exact (no lane is cut off), so
// that the odd bytes' sums are odd(E, Y). The rows' sums come back as (E, Y) pairs.

// odd returns the sums of the odd bytes in 16-bit lanes, from E = Σ v&lanes8 and
// Y = Σ v>>8 over the same words: Y holds byte j's sum at bit 8(j-1), and subtracting the
// even sums there (E's lanes, each below 2¹⁶, shifted down 8 bits) leaves the odd ones in
// their lanes. Every lane of the result must stay below 2¹⁶, and Y below 2⁶⁴.
func odd(e, y uint64) uint64 {
	return y - (e>>8)&^0xff
}

// rowSum is the sum of a row's bytes from its sums E = Σ v&lanes8 and Y = Σ v>>8 (rows of
// at most 1024 pixels).
func rowSum(e, y uint64) int32 {
	return int32(fold(e + odd(e, y)))
}

// projectCols adds four rows' pixels per column into acc, as blockRowProject does, and
// returns each row's sums (see rowSum).
func projectCols(r0, r1, r2, r3 []byte, acc []uint64) (e, y [4]uint64) {
	n := len(r0)
	r0, r1, r2, r3 = r0[:n:n], r1[:n:n], r2[:n:n], r3[:n:n]
	acc = acc[:n/4]
	for x := 0; x < n-7; x += 8 {
		v0, v1, v2, v3 := load64(r0[x:x+8]), load64(r1[x:x+8]), load64(r2[x:x+8]), load64(r3[x:x+8])
		a0, a1, a2, a3 := v0&lanes8, v1&lanes8, v2&lanes8, v3&lanes8
		v0, v1, v2, v3 = v0>>8, v1>>8, v2>>8, v3>>8
		e[0] += a0
		e[1] += a1
		e[2] += a2
		e[3] += a3
		y[0] += v0
		y[1] += v1
		y[2] += v2
		y[3] += v3
		i := x >> 2
		acc[i] += a0 + a1 + a2 + a3
		acc[i+1] += v0 + v1 + v2 + v3
	}
	return e, y
}

// projectRows returns the sums E and Y of two rows of pixels (see rowSum): two rows at a
// time keep the sums in registers.
func projectRows(r0, r1 []byte) (e0, y0, e1, y1 uint64) {
	n := len(r0)
	r0, r1 = r0[:n:n], r1[:n:n]
	for x := 0; x < n-7; x += 8 {
		v0, v1 := load64(r0[x:x+8]), load64(r1[x:x+8])
		e0 += v0 & lanes8
		y0 += v0 >> 8
		e1 += v1 & lanes8
		y1 += v1 >> 8
	}
	return e0, y0, e1, y1
}

// blockRow sets res to the means of the blocks in four rows of pixels, eight
// pixels (two blocks) at a time in 64-bit words; the rows are a multiple of 8 pixels long
// and res a quarter of that. It is a function of its own so that the compiler keeps its
// few variables in registers.
func blockRow(res []int32, r0, r1, r2, r3 []byte) {
	n := len(r0)
	// Full slice expressions: with cap = n and x < n-15, the loads need no bounds check,
	// nor the stores with j stepped along.
	r0, r1, r2, r3 = r0[:n:n], r1[:n:n], r2[:n:n], r3[:n:n]
	x, j := 0, 0
	for xEnd, jEnd := n-15, len(res)-3; x < xEnd && j < jEnd; x, j = x+16, j+4 {
		// Four blocks at a time: half the loop's overhead.
		p := sum4(load64(r0[x:x+8]), load64(r1[x:x+8]), load64(r2[x:x+8]), load64(r3[x:x+8]))
		q := sum4(load64(r0[x+8:x+16]), load64(r1[x+8:x+16]), load64(r2[x+8:x+16]), load64(r3[x+8:x+16]))
		p += p >> 16 // lanes 0 and 2 sum a block each (at most 4080)
		q += q >> 16
		res[j], res[j+1] = int32(uint16(p)), int32(uint16(p>>32))
		res[j+2], res[j+3] = int32(uint16(q)), int32(uint16(q>>32))
	}
	if x < n-7 {
		store2(res, j, sum4(load64(r0[x:x+8]), load64(r1[x:x+8]), load64(r2[x:x+8]), load64(r3[x:x+8])))
	}
}

// sum4 adds the neighbouring pixels of four words, one from each of four rows, into
// 16-bit lanes (at most 2040 each).
func sum4(v0, v1, v2, v3 uint64) uint64 {
	e := v0&lanes8 + v1&lanes8 + v2&lanes8 + v3&lanes8
	return e + odd(e, v0>>8+v1>>8+v2>>8+v3>>8)
}

// store2 stores the sums of two blocks, j and j+1, from the 16-bit lanes of p (two
// neighbouring pixels of four rows each, at most 2040): a full block's sum is its mean in
// 1/16 grey level.
func store2(res []int32, j int, p uint64) {
	p += p >> 16 // lanes 0 and 2 sum a block each (at most 4080)
	res[j] = int32(uint16(p))
	res[j+1] = int32(uint16(p >> 32))
}

// blockRowProject is blockRow that also adds the four rows' pixels per column into acc
// (the sums E and Y of each 8 pixels in two words, see odd) and returns each row's sums
// (see rowSum). Rows are at most 1024 pixels, so that the lanes hold.
func blockRowProject(res []int32, r0, r1, r2, r3 []byte, acc []uint64) (e, y [4]uint64) {
	n := len(r0)
	r0, r1, r2, r3 = r0[:n:n], r1[:n:n], r2[:n:n], r3[:n:n]
	res = res[:n/blk]
	acc = acc[:n/4]
	for x := 0; x < n-7; x += 8 {
		v0, v1, v2, v3 := load64(r0[x:x+8]), load64(r1[x:x+8]), load64(r2[x:x+8]), load64(r3[x:x+8])
		a0, a1, a2, a3 := v0&lanes8, v1&lanes8, v2&lanes8, v3&lanes8
		v0, v1, v2, v3 = v0>>8, v1>>8, v2>>8, v3>>8
		e[0] += a0
		e[1] += a1
		e[2] += a2
		e[3] += a3
		y[0] += v0
		y[1] += v1
		y[2] += v2
		y[3] += v3
		ev, yv := a0+a1+a2+a3, v0+v1+v2+v3
		i := x >> 2
		acc[i] += ev
		acc[i+1] += yv
		store2(res, i, ev+odd(ev, yv))
	}
	return e, y
}

// blockRowRows is blockRow that also returns each row's sum in 16-bit lanes (rows of at
// most 1024 pixels).
func blockRowRows(res []int32, r0, r1, r2, r3 []byte) (rows [4]uint64) {
	n := len(r0)
	r0, r1, r2, r3 = r0[:n:n], r1[:n:n], r2[:n:n], r3[:n:n]
	res = res[:n/blk]
	for x := 0; x < n-7; x += 8 {
		p0, p1, p2, p3 := pairs(load64(r0[x:x+8])), pairs(load64(r1[x:x+8])), pairs(load64(r2[x:x+8])), pairs(load64(r3[x:x+8]))
		rows[0] += p0
		rows[1] += p1
		rows[2] += p2
		rows[3] += p3
		store2(res, x>>2, p0+p1+p2+p3)
	}
	return rows
}

// edgeRow handles a bottom row of blocks shorter than a block (without a shift).
func (d *Detector) edgeRow(frame []byte, y0 int, res []int32) {
	rows := d.h - y0
	if rows <= 0 {
		for j := range res {
			res[j] = invalid
		}
		return
	}
	for j := range res {
		x0, x1 := j*blk, min(j*blk+blk, d.w)
		var sum int32
		for y := y0; y < d.h; y++ {
			for _, p := range frame[y*d.stride+x0 : y*d.stride+x1] {
				sum += int32(p)
			}
		}
		res[j] = sum * unit / int32((x1-x0)*rows)
	}
}

// pairs adds neighbouring bytes of v into four 16-bit lanes.
func pairs(v uint64) uint64 {
	return v&lanes8 + v>>8&lanes8
}

// load64 reads 8 bytes little-endian; the compiler turns it into one load.
func load64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
