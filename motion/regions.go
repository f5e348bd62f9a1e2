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
// blocks and as many unclipped pairs of neighbouring blocks as blocks to judge by, is the background under other light.
const (
	lightRough   = 0.5
	lightTexture = 60
	lightBlocks  = 6
	// clipped block means (1/16 grey level) say nothing about the light's ratio.
	clipped = 250 * unit
)

// blobs groups the changed blocks of a frame into 8-connected regions with a union-find
// over the block grid, all in preallocated arrays.
type blobs struct {
	bw, bh  int
	changed []uint8 // 0, 1 changed, 2 changed strongly
	parent  []int32
	label   []int32 // the region of a changed block
	count   int
	// Per region.
	n, strong      []int32
	x0, y0, x1, y1 []int32 // bounding box in blocks, [x0, x1) x [y0, y1)
	rough, tex     []int64
	pairs          []int32
	kind           []uint8
	// logt[v] is 1024·ln(1 + v/16) for a block mean v in 1/16 grey level.
	logt []int32
}

func newBlobs(bw, bh int) blobs {
	nb := bw * bh
	b := blobs{
		bw: bw, bh: bh,
		changed: make([]uint8, nb), parent: make([]int32, nb), label: make([]int32, nb),
		n: make([]int32, nb), strong: make([]int32, nb),
		x0: make([]int32, nb), y0: make([]int32, nb), x1: make([]int32, nb), y1: make([]int32, nb),
		rough: make([]int64, nb), tex: make([]int64, nb), pairs: make([]int32, nb),
		kind: make([]uint8, nb),
		logt: make([]int32, 256*unit),
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

// union joins the sets of a and b under the smaller index, so that a set's root is its
// first block in raster order.
func (b *blobs) union(x, y int32) {
	rx, ry := b.find(x), b.find(y)
	switch {
	case rx < ry:
		b.parent[ry] = rx
	case ry < rx:
		b.parent[rx] = ry
	}
}

// findRegions finds the regions of d's changed blocks and measures them.
func (b *blobs) findRegions(d *Detector) {
	bw, bh := b.bw, b.bh
	ch := b.changed
	for by := range bh {
		row := by * bw
		for bx := range bw {
			k := int32(row + bx)
			if ch[k] == 0 {
				continue
			}
			b.parent[k] = k
			if bx > 0 && ch[k-1] != 0 {
				b.union(k, k-1)
			}
			if by > 0 {
				u := k - int32(bw)
				if bx > 0 && ch[u-1] != 0 {
					b.union(k, u-1)
				}
				if ch[u] != 0 {
					b.union(k, u)
				}
				if bx+1 < bw && ch[u+1] != 0 {
					b.union(k, u+1)
				}
			}
		}
	}
	b.count = 0
	res, bg, logt := d.res, d.bg, b.logt
	// ratio returns the log ratio of a block's mean to its background and the log of the
	// background, or ok false when either is clipped.
	ratio := func(k int) (l, lb int32, ok bool) {
		bv := min(max(bg[k]>>bgFrac, 0), 255*unit)
		cur := min(max(res[k]+bv, 0), 255*unit)
		if bv >= clipped || cur >= clipped {
			return 0, 0, false
		}
		return logt[cur] - logt[bv], logt[bv], true
	}
	for by := range bh {
		row := by * bw
		for bx := range bw {
			k := row + bx
			if ch[k] == 0 {
				continue
			}
			r := b.find(int32(k))
			var id int32
			if r == int32(k) {
				id = int32(b.count)
				b.count++
				b.n[id], b.strong[id], b.pairs[id] = 0, 0, 0
				b.rough[id], b.tex[id] = 0, 0
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
			b.x0[id] = min(b.x0[id], int32(bx))
			b.x1[id] = max(b.x1[id], int32(bx+1))
			b.y1[id] = max(b.y1[id], int32(by+1))
			l, lb, ok := ratio(k)
			if !ok {
				continue
			}
			for _, nk := range [2]int{k + 1, k + bw} {
				if (nk == k+1 && bx+1 >= bw) || nk >= len(ch) || ch[nk] == 0 {
					continue
				}
				l2, lb2, ok := ratio(nk)
				if !ok {
					continue
				}
				b.rough[id] += int64(abs(l - l2))
				b.tex[id] += int64(abs(lb - lb2))
				b.pairs[id]++
			}
		}
	}
	for id := range b.count {
		switch {
		case b.n[id] == 1 && b.strong[id] == 0:
			b.kind[id] = kindSpeck
		case b.n[id] >= lightBlocks && b.pairs[id] >= b.n[id] && b.tex[id] >= int64(b.pairs[id])*lightTexture &&
			float64(b.rough[id]) < lightRough*float64(b.tex[id]):
			b.kind[id] = kindLight
		}
	}
}
