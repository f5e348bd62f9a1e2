package motion

import "math"

// Kinds of region.
const (
	kindOther  uint8 = iota // changed, not (yet) motion
	kindSpeck               // a single faint block: noise, a rain drop
	kindLight               // the same texture re-lit: headlights, a cloud's shadow
	kindMoving              // followed for long enough: motion
)

// Re-lighting test: a region whose log-brightness ratio to the background varies from
// block to block by less than lightRough of the background's own block-to-block texture,
// with at least lightTexture of texture (in 1/1024 of a natural log) per pair, lightBlocks
// blocks and half as many unclipped pairs of neighbouring blocks as blocks to judge by, is the background under other light.
const (
	lightRough   = 0.5
	lightTexture = 60
	lightBlocks  = 12
	// Bright block means (1/16 grey level) have clipped pixels, whose ratio says nothing
	// about the light.
	clipped = 200 * unit
	noRatio = math.MinInt32 / 4
	// litFrames is how long a block is remembered as re-lit.
	litFrames = 25
	// freshFrames: a changed block that changed from frame to frame within this many
	// frames is still moving; a region without one stands still.
	freshFrames = 4
)

// blobs groups the changed blocks of a frame into 8-connected regions with a union-find
// over the block grid, all in preallocated arrays.
type blobs struct {
	bw, bh  int
	changed []uint8 // 0, 1 changed, 2 changed strongly
	list    []int32 // the changed blocks in raster order
	parent  []int32
	label   []int32 // the region of a changed block
	count   int
	// Per region.
	n, strong      []int32
	fresh          []int32 // blocks still moving (see freshFrames)
	x0, y0, x1, y1 []int32 // bounding box in blocks, [x0, x1) x [y0, y1)
	rough, tex     []int64
	pairs          []int32
	kind           []uint8
	// logt[v] is 1024·ln(1 + v/16) for a block mean v in 1/16 grey level.
	logt []int32
	// Per block: the log ratio to the background (or noRatio when clipped) and the
	// background's log.
	lr, lb []int32
	// lit is the analysis frame (now) until which a block counts as lately re-lit; per
	// region, litN counts its blocks lit lately. A new region mostly made of them is what is left
	// of the light as it fades (highlights that clipped leave a pattern that looks like
	// texture).
	lit  []int64
	litN []int32
	// now counts the frames classified, for lit.
	now int64
}

func newBlobs(bw, bh int) blobs {
	nb := bw * bh
	b := blobs{
		bw: bw, bh: bh,
		changed: make([]uint8, nb), parent: make([]int32, nb), label: make([]int32, nb),
		list: make([]int32, 0, nb),
		n:    make([]int32, nb), strong: make([]int32, nb), fresh: make([]int32, nb),
		x0: make([]int32, nb), y0: make([]int32, nb), x1: make([]int32, nb), y1: make([]int32, nb),
		rough: make([]int64, nb), tex: make([]int64, nb), pairs: make([]int32, nb),
		kind: make([]uint8, nb),
		logt: make([]int32, 256*unit),
		lr:   make([]int32, nb), lb: make([]int32, nb),
		lit: make([]int64, nb), litN: make([]int32, nb),
	}
	for v := range b.logt {
		b.logt[v] = int32(math.Round(1024 * math.Log1p(float64(v)/unit)))
	}
	return b
}

// find returns the root of k's set, halving paths on the way.
func (b *blobs) find(k int32) int32 {
	p := b.parent
	for p[k] != k {
		p[k] = p[p[k]]
		k = p[k]
	}
	return k
}

// join joins the set whose root is r with the set of y under the smaller index, so that a
// set's root is its first block in raster order, and returns the joined set's root.
func (b *blobs) join(r, y int32) int32 {
	ry := b.find(y)
	switch {
	case r < ry:
		b.parent[ry] = r
	case ry < r:
		b.parent[r] = ry
		return ry
	}
	return r
}

// findRegions finds the regions of d's changed blocks and measures them.
func (b *blobs) findRegions(d *Detector) {
	bw, bh := b.bw, b.bh
	ch := b.changed
	rc := raster{bw: bw}
	for _, k := range b.list {
		bx, by := rc.at(int(k))
		{
			b.parent[k] = k
			r := k // the root of k's set so far
			if bx > 0 && ch[k-1] != 0 {
				r = b.join(r, k-1)
			}
			if by > 0 {
				u := k - int32(bw)
				if bx > 0 && ch[u-1] != 0 {
					r = b.join(r, u-1)
				}
				if ch[u] != 0 {
					r = b.join(r, u)
				}
				if bx+1 < bw && ch[u+1] != 0 {
					b.join(r, u+1)
				}
			}
		}
	}
	b.count = 0
	cm, bg, logt := d.cur, d.bg, b.logt
	rc = raster{bw: bw}
	for _, k32 := range b.list {
		k := int(k32)
		bx, by := rc.at(k)
		{
			r := b.find(int32(k))
			var id int32
			if r == int32(k) {
				id = int32(b.count)
				b.count++
				b.n[id], b.strong[id], b.pairs[id], b.fresh[id] = 0, 0, 0, 0
				b.rough[id], b.tex[id], b.litN[id] = 0, 0, 0
				b.x0[id], b.y0[id], b.x1[id], b.y1[id] = int32(bx), int32(by), int32(bx+1), int32(by+1)
				b.kind[id] = kindOther
			} else {
				id = b.label[r]
			}
			b.label[k] = id
			b.n[id]++
			if ch[k] == 2 {
				b.strong[id]++
			}
			if d.still[k] <= freshFrames {
				b.fresh[id]++
			}
			if b.lit[k] >= b.now {
				b.litN[id]++
			}
			b.x0[id] = min(b.x0[id], int32(bx))
			b.x1[id] = max(b.x1[id], int32(bx+1))
			b.y1[id] = max(b.y1[id], int32(by+1))
			// The log ratio of the block to its background, and the background's log.
			bv := min(max(bg[k]>>bgFrac, 0), 255*unit)
			cur := min(max(cm[k]-bg[k]>>bgFrac+bv, 0), 255*unit)
			if bv >= clipped || cur >= clipped {
				b.lr[k] = noRatio
				continue
			}
			b.lr[k], b.lb[k] = logt[cur]-logt[bv], logt[bv]
		}
	}
	// Curvature of the log ratio along rows and columns of three changed blocks, against
	// the curvature of the background's texture: light that varies smoothly over the
	// picture has next to none.
	rc = raster{bw: bw}
	for _, k32 := range b.list {
		k := int(k32)
		bx, by := rc.at(k)
		{
			if b.lr[k] == noRatio {
				continue
			}
			id := b.label[k]
			if bx > 0 && bx+1 < bw && ch[k-1] != 0 && ch[k+1] != 0 && b.lr[k-1] != noRatio && b.lr[k+1] != noRatio {
				b.rough[id] += int64(abs(b.lr[k-1] - 2*b.lr[k] + b.lr[k+1]))
				b.tex[id] += int64(abs(b.lb[k-1] - 2*b.lb[k] + b.lb[k+1]))
				b.pairs[id]++
			}
			if by > 0 && by+1 < bh && ch[k-bw] != 0 && ch[k+bw] != 0 && b.lr[k-bw] != noRatio && b.lr[k+bw] != noRatio {
				b.rough[id] += int64(abs(b.lr[k-bw] - 2*b.lr[k] + b.lr[k+bw]))
				b.tex[id] += int64(abs(b.lb[k-bw] - 2*b.lb[k] + b.lb[k+bw]))
				b.pairs[id]++
			}
		}
	}
	for id := range b.count {
		switch {
		case b.n[id] == 1 && b.strong[id] == 0:
			b.kind[id] = kindSpeck
		case b.n[id] >= lightBlocks && b.tex[id] >= int64(b.pairs[id])*lightTexture && b.pairs[id] > 0 &&
			(4*b.pairs[id] >= b.n[id] && float64(b.rough[id]) < lightRough*float64(b.tex[id]) ||
				8*b.pairs[id] >= b.n[id] && float64(b.rough[id]) < lightRough/2*float64(b.tex[id])):
			b.kind[id] = kindLight
		}
	}
}

// raster turns block indices, visited in increasing order, into columns and rows of a
// grid bw blocks wide without a division (a 64-bit division per changed block cost more
// than the rest of its work).
type raster struct {
	bw, row, start int // start is the index of the first block of row
}

// at returns the column and row of block k, which must not be less than the last k.
func (r *raster) at(k int) (x, y int) {
	for k >= r.start+r.bw {
		r.start += r.bw
		r.row++
	}
	return k - r.start, r.row
}
