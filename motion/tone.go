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
	bins [toneBins][129]uint32
	all  [129]uint32 // every sample, 1 grey level a bin
	cnt  [toneBins]int
	// dev counts the deviations from the curve, 1/16 grey level a bin, up to 64 grey levels.
	dev [64 * unit]uint32
}

// fit computes the tone curve from d's sampled blocks and returns the median difference
// (the frame's common shift), how many samples differ from the background, or from the
// curve, by illumDiff or more, and the median absolute deviation from the curve, in 1/16 grey level.
func (t *toneCurve) fit(d *Detector) (shift int32, beyond int, mad int32) {
	res, bg := d.res, d.bg
	clear(t.bins[:])
	clear(t.all[:])
	clear(t.cnt[:])
	n := 0
	for _, k := range d.sample {
		r := res[k]
		if r == invalid {
			continue
		}
		n++
		b := uint8(bg[k]>>bgFrac>>4) >> 5 // the background's grey level / 32
		i := min(max((r+8)>>4, -64), 64) + 64
		t.bins[b][i]++
		t.all[i]++
		t.cnt[b]++
	}
	if n == 0 {
		clear(t.lut[:])
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
	const width = 256 / toneBins
	for g := range t.lut {
		switch {
		case g <= width/2:
			t.lut[g] = m[0]
		case g >= 256-width/2:
			t.lut[g] = m[toneBins-1]
		default:
			p := int32(g - width/2)
			b := p / width
			f := p - b*width
			t.lut[g] = (m[b]*(width-f) + m[b+1]*f) / width
		}
	}
	clear(t.dev[:])
	for _, k := range d.sample {
		r := res[k]
		if r == invalid {
			continue
		}
		e := abs(r - t.lut[uint8(bg[k]>>bgFrac>>4)])
		if e >= illumDiff*unit || abs(r) >= illumDiff*unit {
			beyond++
		}
		t.dev[min(e, int32(len(t.dev)-1))]++
	}
	return shift, beyond, int32(median(t.dev[:], n))
}
