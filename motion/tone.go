package motion

// toneBins split the background's grey levels for the tone curve.
const toneBins = 8

// toneCurve is the change common to the whole frame as a function of the background's
// brightness: the median difference of the sampled blocks in each of toneBins brightness
// bands, interpolated between the bands. A plain shift (auto-exposure) is flat; a gain is
// a slope; dawn light that clips the highlights at white is a curve that falls back to
// zero for the bright blocks, which a single shift would leave as changed.
type toneCurve struct {
	lut  [256]int32 // the expected difference, 1/16 grey level, per background grey level
	flat bool       // every entry of lut is the same
	bins [toneBins][129]uint32
	all  [129]uint32 // every sample, 1 grey level a bin
	cnt  [toneBins]int
	// dev counts the deviations from the curve, 1/16 grey level a bin, up to 64 grey levels.
	dev [64 * unit]uint32
	// The valid samples of this frame, in order: difference and background grey level.
	sr []int32
	sg []uint8
}

// fit computes the tone curve from d's sampled blocks and returns the median difference
// (the frame's common shift), how many samples differ from the background, or from the
// curve, by illumDiff or more, and the median absolute deviation from the curve, in 1/16 grey level.
func (t *toneCurve) fit(d *Detector) (shift int32, beyond int, mad int32) {
	wasFlat := t.flat // then every entry of lut is lut[0]
	clear(t.bins[:])
	clear(t.all[:])
	clear(t.cnt[:])
	n := t.gather(d.sample, d.cur, d.bg)
	if n == 0 {
		clear(t.lut[:])
		t.flat = true
		return 0, 0, 0
	}
	shift = int32(median(t.all[:], n)-64) * unit
	var m [toneBins]int32
	least := max(16, n/32)
	for b := range m {
		m[b] = shift
		if t.cnt[b] >= least {
			m[b] = int32(median(t.bins[b][:], t.cnt[b])-64) * unit
		}
	}
	// Flat below the middle of the first band and above that of the last, linear between
	// the middles of neighbouring bands.
	t.flat = true
	for _, v := range m {
		t.flat = t.flat && v == m[0]
	}
	clear(t.dev[:])
	if t.flat {
		// What the interpolation below gives between equal values: the usual frame,
		// whose table is most often the last frame's.
		if !wasFlat || t.lut[0] != m[0] {
			for g := range t.lut {
				t.lut[g] = m[0]
			}
		}
		beyond = t.deviationsFlat(n, m[0])
		return shift, beyond, int32(median(t.dev[:], n))
	}
	const width = 256 / toneBins
	for g := range width/2 + 1 {
		t.lut[g] = m[0]
	}
	for g := 256 - width/2; g < 256; g++ {
		t.lut[g] = m[toneBins-1]
	}
	for b := range toneBins - 1 {
		lo, hi := m[b], m[b+1]
		seg := t.lut[width/2+b*width : width/2+b*width+width]
		for f := range seg {
			seg[f] = (lo*(width-int32(f)) + hi*int32(f)) / width
		}
	}
	beyond = t.deviations(n)
	return shift, beyond, int32(median(t.dev[:], n))
}

// gather histograms the differences of the valid sampled blocks, per band of the
// background's grey level and all together, keeps them in sr and sg (as long as the
// sample) and returns how many.
func (t *toneCurve) gather(sample, cur, bg []int32) int {
	// Two loops, each with few enough variables to stay in registers.
	n := samples(t.sr[:len(sample)], t.sg[:len(sample)], sample, cur, bg)
	sg := t.sg[:n]
	sr := t.sr[:len(sg)]
	for j, g := range sg {
		i := min(max((sr[j]+8)>>4, -64), 64) + 64
		t.bins[g>>5][i]++
		t.all[i]++
		t.cnt[g>>5]++
	}
	return n
}

// samples keeps the difference and the background's grey level of the valid sampled
// blocks in sr and sg (as long as sample) and returns how many. Inlined, its loop would
// share gather's registers.
//
//go:noinline
func samples(sr []int32, sg []uint8, sample, cur, bg []int32) int {
	sg = sg[:len(sr)]
	n := 0
	for _, k := range sample {
		c, bv := cur[k], bg[k]>>bgFrac
		if c == invalid {
			continue
		}
		sr[n], sg[n] = c-bv, uint8(bv>>4)
		n++
	}
	return n
}

// deviations histograms the n gathered samples' deviations from the curve in dev and
// returns how many differ from the background, or from the curve, by illumDiff or more.
func (t *toneCurve) deviations(n int) (beyond int) {
	sr, sg := t.sr[:n], t.sg[:n]
	sg = sg[:len(sr)]
	for j, r := range sr {
		e := abs(r - t.lut[sg[j]])
		if e >= illumDiff*unit || abs(r) >= illumDiff*unit {
			beyond++
		}
		t.dev[min(uint32(e), uint32(len(t.dev)-1))]++
	}
	return beyond
}

// deviationsFlat is deviations for a flat curve, shift at every grey level.
func (t *toneCurve) deviationsFlat(n int, shift int32) (beyond int) {
	for _, r := range t.sr[:n] {
		e := abs(r - shift)
		if e >= illumDiff*unit || abs(r) >= illumDiff*unit {
			beyond++
		}
		t.dev[min(uint32(e), uint32(len(t.dev)-1))]++
	}
	return beyond
}
