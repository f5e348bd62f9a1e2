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
		r0 := frame[o : o+w]
		r1 := frame[o+stride : o+stride+w]
		r2 := frame[o+2*stride : o+2*stride+w]
		r3 := frame[o+3*stride : o+3*stride+w]
		for j := 0; j < j0; j++ {
			res[j] = invalid
		}
		p0, p1 := j0*blk+sx, pairsEnd*blk+sx
		if project {
			// Without a shift, the same loads give the projections for the shake
			// estimate: column sums in lanes, row sums per row.
			// Columns are summed over every other row of blocks: enough to average out
			// noise, and half the work.
			var rows [4]uint64
			if by&1 == 0 {
				rows = blockRowProject(res[j0:pairsEnd], r0[p0:p1], r1[p0:p1], r2[p0:p1], r3[p0:p1], st.acc)
			} else {
				rows = blockRowRows(res[j0:pairsEnd], r0[p0:p1], r1[p0:p1], r2[p0:p1], r3[p0:p1])
			}
			for i, v := range rows {
				st.row[y0+i] = int32(fold(v))
			}
			if by%128 == 127 {
				st.flush(st.acc)
			}
		} else {
			blockRow(res[j0:pairsEnd], r0[p0:p1], r1[p0:p1], r2[p0:p1], r3[p0:p1])
		}
		for j := pairsEnd; j < bw; j++ {
			x0, x1 := j*blk+sx, min(j*blk+blk+sx, w)
			if j >= j1 && (sx != 0 || x0 >= x1) {
				res[j] = invalid
				continue
			}
			var sum int32
			for x := x0; x < x1; x++ {
				sum += int32(r0[x]) + int32(r1[x]) + int32(r2[x]) + int32(r3[x])
			}
			res[j] = sum * unit / int32((x1-x0)*blk)
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
		var rows [4]uint64
		if by&1 == 0 {
			rows = projectCols(r0, r1, r2, r3, st.acc)
		} else {
			rows = projectRows(r0, r1, r2, r3)
		}
		for i, v := range rows {
			st.row[by*blk+i] = int32(fold(v))
		}
		if by%128 == 127 {
			st.flush(st.acc)
		}
	}
}

// projectCols adds four rows' pixels per column into acc, as blockRowProject does, and
// returns each row's sum in 16-bit lanes.
func projectCols(r0, r1, r2, r3 []byte, acc []uint64) (rows [4]uint64) {
	n := len(r0)
	r1, r2, r3 = r1[:n], r2[:n], r3[:n]
	acc = acc[:n/4]
	for x := 0; x+8 <= n; x += 8 {
		v0, v1, v2, v3 := load64(r0[x:x+8]), load64(r1[x:x+8]), load64(r2[x:x+8]), load64(r3[x:x+8])
		e0, e1, e2, e3 := v0&lanes8, v1&lanes8, v2&lanes8, v3&lanes8
		o0, o1, o2, o3 := v0>>8&lanes8, v1>>8&lanes8, v2>>8&lanes8, v3>>8&lanes8
		rows[0] += e0 + o0
		rows[1] += e1 + o1
		rows[2] += e2 + o2
		rows[3] += e3 + o3
		i := x >> 2
		acc[i] += e0 + e1 + e2 + e3
		acc[i+1] += o0 + o1 + o2 + o3
	}
	return rows
}

// projectRows returns the sums of four rows of pixels in 16-bit lanes.
func projectRows(r0, r1, r2, r3 []byte) (rows [4]uint64) {
	n := len(r0)
	r1, r2, r3 = r1[:n], r2[:n], r3[:n]
	for x := 0; x+8 <= n; x += 8 {
		rows[0] += pairs(load64(r0[x : x+8]))
		rows[1] += pairs(load64(r1[x : x+8]))
		rows[2] += pairs(load64(r2[x : x+8]))
		rows[3] += pairs(load64(r3[x : x+8]))
	}
	return rows
}

// blockRow sets res to the means of the blocks in four rows of pixels, eight
// pixels (two blocks) at a time in 64-bit words; the rows are a multiple of 8 pixels long
// and res a quarter of that. It is a function of its own so that the compiler keeps its
// few variables in registers.
func blockRow(res []int32, r0, r1, r2, r3 []byte) {
	n := len(r0)
	r1, r2, r3 = r1[:n], r2[:n], r3[:n]
	res = res[:n/blk]
	for x := 0; x+8 <= n; x += 8 {
		// Each 16-bit lane sums two neighbouring pixels of four rows: at most 2040.
		acc := pairs(load64(r0[x:x+8])) + pairs(load64(r1[x:x+8])) +
			pairs(load64(r2[x:x+8])) + pairs(load64(r3[x:x+8]))
		acc = acc&lanes16 + acc>>16&lanes16
		j := x >> 2 // x / blk, without the sign fix-up of a signed division
		// A full block's sum is its mean in 1/16 grey level.
		res[j] = int32(uint32(acc))
		res[j+1] = int32(acc >> 32)
	}
}

// blockRowProject is blockRow that also adds the four rows' pixels per column into acc
// (even and odd columns of each 8 pixels in two words of 16-bit lanes) and returns each
// row's sum in 16-bit lanes. Rows are at most 1024 pixels, so that the lanes hold.
func blockRowProject(res []int32, r0, r1, r2, r3 []byte, acc []uint64) (rows [4]uint64) {
	n := len(r0)
	r1, r2, r3 = r1[:n], r2[:n], r3[:n]
	res = res[:n/blk]
	acc = acc[:n/4]
	for x := 0; x+8 <= n; x += 8 {
		v0, v1, v2, v3 := load64(r0[x:x+8]), load64(r1[x:x+8]), load64(r2[x:x+8]), load64(r3[x:x+8])
		e0, e1, e2, e3 := v0&lanes8, v1&lanes8, v2&lanes8, v3&lanes8
		o0, o1, o2, o3 := v0>>8&lanes8, v1>>8&lanes8, v2>>8&lanes8, v3>>8&lanes8
		rows[0] += e0 + o0
		rows[1] += e1 + o1
		rows[2] += e2 + o2
		rows[3] += e3 + o3
		ev, od := e0+e1+e2+e3, o0+o1+o2+o3
		i := x >> 2
		acc[i] += ev
		acc[i+1] += od
		s := ev + od
		s = s&lanes16 + s>>16&lanes16
		j := x >> 2
		res[j] = int32(uint32(s))
		res[j+1] = int32(s >> 32)
	}
	return rows
}

// blockRowRows is blockRow that also returns each row's sum in 16-bit lanes (rows of at
// most 1024 pixels).
func blockRowRows(res []int32, r0, r1, r2, r3 []byte) (rows [4]uint64) {
	n := len(r0)
	r1, r2, r3 = r1[:n], r2[:n], r3[:n]
	res = res[:n/blk]
	for x := 0; x+8 <= n; x += 8 {
		p0, p1, p2, p3 := pairs(load64(r0[x:x+8])), pairs(load64(r1[x:x+8])), pairs(load64(r2[x:x+8])), pairs(load64(r3[x:x+8]))
		rows[0] += p0
		rows[1] += p1
		rows[2] += p2
		rows[3] += p3
		acc := p0 + p1 + p2 + p3
		acc = acc&lanes16 + acc>>16&lanes16
		j := x >> 2
		res[j] = int32(uint32(acc))
		res[j+1] = int32(acc >> 32)
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
