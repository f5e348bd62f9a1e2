package motion

// Region following. A region must be found again in the next frame, near where it was
// (moved by its last displacement, within its own size while its speed is unknown and half
// of it after), to build up persistence. When a frame is cluttered with many small regions
// (rain, snow, insects), matching gets strict: the overlap must be half a region, in
// place, a region must be seen one frame more, and a region must be three
// times the clutter's typical size to count, so that chance overlaps of new drops do not
// chain into tracks.
const (
	maxTracks = 256
	// clutterRegions regions per frame on average make a frame cluttered.
	clutterRegions = 12
	// clutterFactor is how many times the clutter's mean region size a region needs.
	clutterFactor = 3
	// longTrack: two seconds at 5 analysis frames per second.
	longTrack = 10
)

type track struct {
	x0, y0, x1, y1 int32 // box in blocks
	vx, vy         int32 // last displacement of the box, blocks per frame
	n              int32 // changed blocks
	prevN          int32 // in the previous frame: the size counted is the larger
	hits, misses   int32
	region         int32 // this frame's region, or -1
	// light is set once the region was found to be re-lit background: it stays so while it
	// is followed, as the change fades and the test grows unsure.
	light bool
}

type tracker struct {
	t     []track
	claim []int32 // per region, the track that took it, or -1
	// overlap scratch: the regions a track's box meets and how many of their blocks.
	ids, cnt []int32
	out      []Region
	outN     []int32
	outBox   [][4]int32
	// near marks the blocks in and around this frame's moving regions, which do not
	// teach the flicker: what moves to and fro in one place stays motion.
	near []uint8
	// Running averages, in 1/16, of the number of candidate regions per frame and their
	// mean size in blocks.
	clutterN, clutterSz int32
}

func newTracker(nb int) tracker {
	return tracker{
		t:     make([]track, 0, maxTracks),
		claim: make([]int32, nb),
		near:  make([]uint8, nb),
		ids:   make([]int32, 0, 16), cnt: make([]int32, 0, 16),
		out: make([]Region, 0, maxTracks), outN: make([]int32, 0, maxTracks),
		outBox: make([][4]int32, 0, maxTracks),
	}
}

// clear forgets every track (after an illumination change).
func (tr *tracker) clear() {
	tr.t = tr.t[:0]
	tr.out, tr.outN, tr.outBox = tr.out[:0], tr.outN[:0], tr.outBox[:0]
	clear(tr.near)
}

// follow matches this frame's regions to the tracks, starts tracks for new regions and
// marks the regions that are motion. It returns the region size motion needs this frame,
// the size of the largest moving region (or of the largest candidate when none moves) and
// the blocks of all moving regions.
//
// longTrack frames of following make any size enough (outside clutter): a small thing that
// keeps moving in view is motion down to a single block, which may then fade to faint
// single blocks without being lost.
func (tr *tracker) follow(b *blobs, minBlocks int, persist, longTrack int32) (need, best, moving int) {
	tr.mark(b, 0) // clear last frame's marks
	cand, sz := 0, 0
	for id := range b.count {
		if b.kind[id] == kindOther {
			cand++
			sz += int(b.n[id])
		}
	}
	// Fast up, slow down: rain starts at once and may pause.
	tr.clutterN = max(tr.clutterN+(int32(cand)*16-tr.clutterN)>>3, int32(cand)*16)
	if cand > 0 {
		if tr.clutterSz == 0 {
			tr.clutterSz = int32(sz * 16 / cand)
		}
		tr.clutterSz += (int32(sz*16/cand) - tr.clutterSz) >> 3
	}
	cluttered := tr.clutterN >= clutterRegions*16
	need = minBlocks
	if cluttered {
		need = max(minBlocks, int(clutterFactor*tr.clutterSz+15)/16)
	}

	// Under clutter a region must be seen once more.
	confirm := persist
	if cluttered {
		confirm++
	}
	claim := tr.claim[:b.count]
	for i := range claim {
		claim[i] = -1
	}
	for i := range tr.t {
		t := &tr.t[i]
		t.region = -1
		// Where to look: around the predicted box, as far as the object's own size while
		// its speed is unknown and half of it after; a block when cluttered.
		sx, sy := int32(0), int32(0)
		if !cluttered {
			div := int32(1)
			if t.hits > 1 {
				div = 2
			}
			sx, sy = max(1, (t.x1-t.x0)/div), max(1, (t.y1-t.y0)/div)
		}
		id, ov := tr.overlap(b, t.x0+t.vx-sx, t.y0+t.vy-sy, t.x1+t.vx+sx, t.y1+t.vy+sy, !cluttered && t.hits >= longTrack)
		if id < 0 {
			continue
		}
		if cluttered && 2*ov < min(b.n[id], t.n) {
			continue
		}
		if c := claim[id]; c >= 0 {
			if tr.t[c].hits >= t.hits {
				continue
			}
			tr.t[c].region = -1
		}
		claim[id] = int32(i)
		t.region = id
	}
	// Light stays light along a track, and motion motion.
	for i := range tr.t {
		t := &tr.t[i]
		if t.region < 0 {
			continue
		}
		switch {
		case t.light:
			b.kind[t.region] = kindLight
		case t.hits >= persist:
			// A region followed as motion stays motion: one frame's light test does
			// not overrule it.
			b.kind[t.region] = kindOther
		case b.kind[t.region] == kindLight:
			t.light = true
		}
	}
	// Update or drop the tracks; a confirmed track may miss one frame.
	kept := tr.t[:0]
	for _, t := range tr.t {
		if t.region < 0 {
			if t.hits < confirm || t.misses > 0 {
				continue
			}
			t.misses++
			t.x0, t.x1, t.y0, t.y1 = t.x0+t.vx, t.x1+t.vx, t.y0+t.vy, t.y1+t.vy
			kept = append(kept, t)
			continue
		}
		id := t.region
		t.vx = (b.x0[id] + b.x1[id] - t.x0 - t.x1) / 2
		t.vy = (b.y0[id] + b.y1[id] - t.y0 - t.y1) / 2
		t.x0, t.y0, t.x1, t.y1 = b.x0[id], b.y0[id], b.x1[id], b.y1[id]
		t.prevN, t.n = t.n, b.n[id]
		t.hits = min(t.hits+1, 1<<20)
		t.misses = 0
		kept = append(kept, t)
	}
	tr.t = kept
	// New tracks for the regions no track took, big ones first.
	for pass := range 2 {
		for id := range b.count {
			if claim[id] >= 0 || !followed(b.kind[id]) || len(tr.t) == cap(tr.t) {
				continue
			}
			if big := int(b.n[id]) >= need; big != (pass == 0) {
				continue
			}
			if b.kind[id] == kindOther && 2*b.litN[id] >= b.n[id] {
				b.kind[id] = kindLight
			}
			claim[id] = int32(len(tr.t))
			tr.t = append(tr.t, track{x0: b.x0[id], y0: b.y0[id], x1: b.x1[id], y1: b.y1[id],
				n: b.n[id], hits: 1, region: -1, light: b.kind[id] == kindLight})
		}
	}
	// The motion: confirmed tracks seen this frame with a region big enough.
	tr.out, tr.outN, tr.outBox = tr.out[:0], tr.outN[:0], tr.outBox[:0]
	for _, t := range tr.t {
		if t.region < 0 {
			continue
		}
		n := int(max(t.n, t.prevN))
		// A region none of whose blocks changed from frame to frame lately stands still: an object that stopped, or the place one left. It is followed
		// but is no motion (and becomes background after StationaryFrames).
		if b.fresh[t.region] > 0 && t.hits >= confirm && (n >= need || t.hits >= longTrack && !cluttered) && !t.light {
			b.kind[t.region] = kindMoving
			moving += int(t.n)
			// Insert by size, largest first.
			i := len(tr.out)
			tr.out = append(tr.out, Region{})
			tr.outN = append(tr.outN, 0)
			tr.outBox = append(tr.outBox, [4]int32{})
			for i > 0 && tr.outN[i-1] < int32(n) {
				tr.out[i], tr.outN[i], tr.outBox[i] = tr.out[i-1], tr.outN[i-1], tr.outBox[i-1]
				i--
			}
			tr.out[i] = Region{Frames: int(t.hits)}
			tr.outN[i] = int32(n)
			tr.outBox[i] = [4]int32{t.x0, t.y0, t.x1, t.y1}
		}
	}
	tr.mark(b, 1)
	if len(tr.out) > 0 {
		best = max(int(tr.outN[0]), need)
	} else {
		for id := range b.count {
			if b.kind[id] == kindOther {
				best = max(best, int(b.n[id]))
			}
		}
	}
	return need, best, moving
}

// overlap returns the followed region (or speck, if specks) with the most changed blocks
// inside the box (clipped to the grid) and how many, or -1.
func (tr *tracker) overlap(b *blobs, x0, y0, x1, y1 int32, specks bool) (id, count int32) {
	x0, y0 = max(x0, 0), max(y0, 0)
	x1, y1 = min(x1, int32(b.bw)), min(y1, int32(b.bh))
	tr.ids, tr.cnt = tr.ids[:0], tr.cnt[:0]
	for y := y0; y < y1; y++ {
		row := y * int32(b.bw)
		for x := x0; x < x1; x++ {
			k := row + x
			if b.changed[k] == 0 {
				continue
			}
			l := b.label[k]
			if !followed(b.kind[l]) && !(specks && b.kind[l] == kindSpeck) {
				continue
			}
			found := false
			for i, v := range tr.ids {
				if v == l {
					tr.cnt[i]++
					found = true
					break
				}
			}
			if !found && len(tr.ids) < cap(tr.ids) {
				tr.ids = append(tr.ids, l)
				tr.cnt = append(tr.cnt, 1)
			}
		}
	}
	id, count = -1, 0
	for i, v := range tr.ids {
		if tr.cnt[i] > count {
			id, count = v, tr.cnt[i]
		}
	}
	return id, count
}

// followed reports whether regions of a kind are followed: candidates and re-lit ones.
func followed(kind uint8) bool { return kind == kindOther || kind == kindLight }

// mark sets near to v over the moving regions' boxes widened by two blocks.
func (tr *tracker) mark(b *blobs, v uint8) {
	bw := int32(b.bw)
	for _, bx := range tr.outBox {
		x0, x1 := max(bx[0]-2, 0), min(bx[2]+2, bw)
		if x0 >= x1 {
			continue
		}
		for y := max(bx[1]-2, 0); y < min(bx[3]+2, int32(b.bh)); y++ {
			row := tr.near[y*bw+x0 : y*bw+x1]
			for x := range row {
				row[x] = v
			}
		}
	}
}
