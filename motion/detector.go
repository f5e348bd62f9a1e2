// Package motion finds motion in small GRAY8 frames and turns it into recording events.
// Detector compares each frame with a learnt background and reports a score per frame;
// Gate applies start hysteresis, post-roll, pre-roll and event merging to those results.
// It is pure Go, takes its time from the caller and allocates nothing per frame.
package motion

import (
	"fmt"
	"math"
)

// Defaults used when the corresponding Options field is zero.
const (
	DefaultWidth        = 320
	DefaultHeight       = 180
	DefaultSensitivity  = 0.5
	DefaultLearnRate    = 0.05
	DefaultWarmupFrames = 10
	// DefaultStationaryFrames: a block that differs from the background but has not
	// changed from frame to frame for this many frames is a stationary change (an object
	// put down or taken away, a ghost), absorbed into the background rather than motion.
	DefaultStationaryFrames = 15
)

// BlockSize is the side, in pixels, of the square blocks the detector averages before it
// compares a frame with the background. Averaging 16 pixels divides sensor noise by four and
// is far cheaper than a blur; motion smaller than a block is still seen, diluted. (The
// 64-bit block sums in blockRow are written for 4.)
const BlockSize = 4

const (
	// blk is BlockSize as an untyped constant for index arithmetic.
	blk = BlockSize
	// Block values are block means in 1/16 grey level (a full block's pixel sum), and the
	// background keeps bgFrac more fractional bits so that slow learning still moves it.
	unit     = 16
	bgFrac   = 12
	fracMask = 1<<bgFrac - 1
	// rateOne is a learn rate of 1 in the fixed-point rates.
	rateOne = 1 << 16
	// histHalf bounds the histograms of block differences (64 grey levels either way);
	// larger differences are clamped, which leaves a median below the clamp exact.
	histHalf = 64*unit - 1
	// illumDiff is the change, in grey levels, that counts towards an illumination change.
	// It does not depend on Sensitivity, so that a higher sensitivity never turns a frame
	// into an illumination change and so never detects less.
	illumDiff = 10
	// illumRatio is the share of the unmasked area that must change by illumDiff beyond the
	// frame's common shift for the change to be global (an IR switch, a lamp in view).
	illumRatio = 0.5
	// sampleBlocks is about how many blocks the median and noise estimates look at.
	sampleBlocks = 1024
	// noiseSigmas sets the noise floor: the per-block threshold is at least this many
	// estimated noise standard deviations, so a grainy night image does not trigger.
	noiseSigmas = 5
	// Sensitivity maps geometrically onto these ends: at 0 a block must change by 40 grey
	// levels and 1% of the area must change; at 1, 5 grey levels and 0.04%.
	diffLeast, diffMost = 40.0, 5.0
	areaLeast, areaMost = 0.01, 0.0004
	// minLearnRate keeps the fixed-point background update able to move at all.
	minLearnRate = 0.001
	// maxSide bounds frame sides; motion runs on small frames and the block sums are 32-bit.
	maxSide = 4096
)

// Options configure a Detector. The zero value watches a 320x180 frame with default
// sensitivity and no masks.
type Options struct {
	// Width and Height are the frame size in pixels; both zero means 320x180.
	Width, Height int
	// Stride is the number of bytes from one row to the next; zero means Width. GStreamer
	// pads GRAY8 rows to a multiple of 4 bytes, so a width of 318 has a stride of 320.
	Stride int
	// Sensitivity in (0, 1] derives every threshold: higher detects smaller and fainter
	// motion and never detects less. From 0 to 1 a block's mean must change by 40 down to
	// 5 grey levels (never less than five times the noise measured in the frame), and 1%
	// down to 0.04% of the unmasked area must change. Zero selects DefaultSensitivity
	// (about 14 grey levels and 0.2%); use a small value such as 0.01 for the least
	// sensitive setting.
	Sensitivity float64
	// LearnRate in [0.001, 1] is how fast the background follows the scene per frame (0.05
	// forgets an old background in about 20 frames). Zero selects DefaultLearnRate. Blocks
	// that show motion learn four times slower, so that a slow object does not fade into
	// the background while it moves, yet a parked car is absorbed after a while.
	LearnRate float64
	// WarmupFrames is how many frames build the first background (and the background after
	// Reset); they report Warmup and never Motion. Zero selects DefaultWarmupFrames.
	WarmupFrames int
	// MaskUnits says how Masks and MaskPolygons are measured.
	MaskUnits Units
	// Masks and MaskPolygons are areas to ignore, e.g. a timestamp overlay or a tree. A
	// block is ignored when a mask covers any of its pixels, so that nothing leaks from
	// the edge of a mask.
	Masks        []Rect
	MaskPolygons []Polygon
	// StationaryFrames, zero for the default: see DefaultStationaryFrames.
	StationaryFrames int
}

// Result describes one frame. Score and Area are zero on warm-up and illumination frames.
type Result struct {
	// Score in [0, 1) grows with the changed area: changed/(changed+needed), counted in
	// blocks, so it is 0.5 exactly at the area threshold and Score >= 0.5 exactly when
	// Motion is true.
	Score float64
	// Area is the fraction of the unmasked blocks that differ from the background.
	Area float64
	// Motion is true when enough of the frame changed, after warm-up and outside an
	// illumination change.
	Motion bool
	// Illumination is true when the frame changed as a whole (lights switched, an IR
	// day/night switch): it brightened or darkened by 10 grey levels or more, or half of it
	// changed by that much beyond the common shift. The background was re-learnt from this
	// frame and no motion is reported.
	Illumination bool
	// Warmup is true while the first background is being learnt.
	Warmup bool
}

// Detector finds motion in a sequence of GRAY8 frames of one size. Frames are split into
// blocks of BlockSize x BlockSize pixels whose means are compared with a running-average
// background, after removing the shift common to the whole frame (auto-exposure, a dimmer)
// and with a threshold raised above the frame's estimated noise. A Detector is not safe for
// concurrent use.
type Detector struct {
	w, h, stride int
	frameLen     int
	bw, bh       int // blocks per row and per column

	diff16    int32 // per-block difference threshold, 1/16 grey level
	minArea   float64
	unmasked  int // blocks no mask touches
	minBlocks int // changed blocks needed for motion
	// illumSamples sampled blocks beyond illumDiff make an illumination change.
	illumSamples int
	// rate and fgRate are learn rates in 1/65536: difference·rate and fraction·rate
	// both fit in 32 bits.
	rate, fgRate int32
	warmup       int

	// Per-block state, row by row. Masked blocks are computed too (it is cheaper than
	// skipping them) but never counted: runs lists the unmasked stretches of blocks.
	res  []int32 // difference from the background, 1/16 grey level
	bg   []int32 // background mean, 1/16 grey level << bgFrac
	runs []span
	// prev is each block's mean in the previous frame (1/16 grey level), still how many
	// frames in a row it has differed from the background without changing itself.
	prev       []int32
	still      []uint16
	prevShift  int32
	stationary uint16

	// The median and noise estimates look at about sampleBlocks unmasked blocks spread
	// over the frame.
	sample []int32
	hist   []uint32 // 2*histHalf+1 bins of differences, reused for their magnitudes

	frames int // frames learnt since Reset, up to warmup
}

// span is a stretch [from, to) of block indices.
type span struct{ from, to int32 }

// NewDetector returns a Detector for frames described by o, or an error that says which
// option is wrong.
func NewDetector(o Options) (*Detector, error) {
	if o.Width == 0 && o.Height == 0 {
		o.Width, o.Height = DefaultWidth, DefaultHeight
	}
	if o.Width < blk || o.Height < blk || o.Width > maxSide || o.Height > maxSide {
		return nil, fmt.Errorf("motion: frame size %dx%d is out of range: use %d to %d pixels per side (both zero means %dx%d)",
			o.Width, o.Height, blk, maxSide, DefaultWidth, DefaultHeight)
	}
	if o.Stride == 0 {
		o.Stride = o.Width
	}
	if o.Stride < o.Width || o.Stride > 2*maxSide {
		return nil, fmt.Errorf("motion: stride %d does not fit width %d: use at least the width (0 means the width)", o.Stride, o.Width)
	}
	if o.Sensitivity == 0 {
		o.Sensitivity = DefaultSensitivity
	}
	if !(o.Sensitivity > 0 && o.Sensitivity <= 1) {
		return nil, fmt.Errorf("motion: sensitivity %v is out of range: use more than 0 and at most 1 (0 means %v)", o.Sensitivity, DefaultSensitivity)
	}
	if o.LearnRate == 0 {
		o.LearnRate = DefaultLearnRate
	}
	if !(o.LearnRate >= minLearnRate && o.LearnRate <= 1) {
		return nil, fmt.Errorf("motion: learn rate %v is out of range: use %v to 1 (0 means %v)", o.LearnRate, minLearnRate, DefaultLearnRate)
	}
	if o.WarmupFrames == 0 {
		o.WarmupFrames = DefaultWarmupFrames
	}
	if o.StationaryFrames == 0 {
		o.StationaryFrames = DefaultStationaryFrames
	}
	if o.StationaryFrames < 1 || o.StationaryFrames > 65535 {
		return nil, fmt.Errorf("motion: %d stationary frames is out of range: use 1 to 65535 (0 means %d)", o.StationaryFrames, DefaultStationaryFrames)
	}
	if o.WarmupFrames < 1 {
		return nil, fmt.Errorf("motion: warm-up of %d frames is out of range: use 1 or more (0 means %d)", o.WarmupFrames, DefaultWarmupFrames)
	}

	d := &Detector{
		w: o.Width, h: o.Height, stride: o.Stride,
		frameLen: o.Stride * o.Height,
		bw:       (o.Width + blk - 1) / blk,
		bh:       (o.Height + blk - 1) / blk,
		warmup:   o.WarmupFrames,
	}
	masked, err := blockMask(o, d.bw, d.bh)
	if err != nil {
		return nil, err
	}
	for i, m := range masked {
		switch {
		case m:
		case len(d.runs) > 0 && d.runs[len(d.runs)-1].to == int32(i):
			d.runs[len(d.runs)-1].to++
		default:
			d.runs = append(d.runs, span{int32(i), int32(i + 1)})
		}
		if !m {
			d.unmasked++
		}
	}
	if d.unmasked == 0 {
		return nil, fmt.Errorf("motion: the masks cover the whole %dx%d frame, so nothing is left to watch: remove or shrink a mask", d.w, d.h)
	}
	// A step coprime with the row length spreads the sample over columns as well as rows.
	step := d.unmasked/sampleBlocks + 1
	for step > 1 && gcd(step, d.bw) != 1 {
		step++
	}
	n := 0
	for i, m := range masked {
		if !m {
			if n%step == 0 {
				d.sample = append(d.sample, int32(i))
			}
			n++
		}
	}
	d.res = make([]int32, len(masked))
	d.bg = make([]int32, len(masked))
	d.prev = make([]int32, len(masked))
	d.still = make([]uint16, len(masked))
	d.stationary = uint16(o.StationaryFrames)
	d.hist = make([]uint32, 2*histHalf+1)

	s := o.Sensitivity
	d.diff16 = int32(math.Round(diffLeast * math.Pow(diffMost/diffLeast, s) * unit))
	d.minArea = areaLeast * math.Pow(areaMost/areaLeast, s)
	d.minBlocks = max(1, int(math.Ceil(d.minArea*float64(d.unmasked)-1e-9)))
	d.illumSamples = max(1, int(math.Ceil(illumRatio*float64(len(d.sample)))))
	d.rate = max(1, int32(math.Round(o.LearnRate*rateOne)))
	d.fgRate = max(1, d.rate/4)
	return d, nil
}

// Thresholds returns what Sensitivity derived: the change of a block's mean, in grey levels,
// that counts as changed (before the noise floor raises it), and the fraction of the
// unmasked area that must change for motion.
func (d *Detector) Thresholds() (diff, area float64) {
	return float64(d.diff16) / unit, d.minArea
}

// Reset forgets the background; the next WarmupFrames frames learn it again. Call it after
// the camera moved or the pipeline restarted with a different view.
func (d *Detector) Reset() {
	d.frames = 0
}

// Process compares frame, Height rows of Stride bytes of 8-bit luma, with the background and
// then updates the background. It returns an error, and changes nothing, when the frame has
// the wrong length.
func (d *Detector) Process(frame []byte) (Result, error) {
	if len(frame) != d.frameLen {
		return Result{}, fmt.Errorf("motion: frame has %d bytes, want %d (%dx%d GRAY8, stride %d): check the size of the frames sent to the detector",
			len(frame), d.frameLen, d.w, d.h, d.stride)
	}
	d.differences(frame)
	if d.frames < d.warmup {
		d.rememberFrame(0)
		d.learnWarmup()
		return Result{Warmup: true}, nil
	}

	// The median difference is the shift common to the whole frame (auto-exposure, a
	// dimmer); motion is measured beyond it. The median absolute deviation around it
	// estimates the noise without being fooled by a moving object. Both come from
	// histograms of the sample: exact enough, cheap, no sort and no allocation.
	res, bg := d.res, d.bg
	clear(d.hist)
	for _, k := range d.sample {
		d.hist[min(max(res[k], -histHalf), histHalf)+histHalf]++
	}
	shift := int32(median(d.hist, len(d.sample))) - histHalf
	clear(d.hist)
	beyond := 0
	for _, k := range d.sample {
		r := abs(res[k] - shift)
		if r >= illumDiff*unit {
			beyond++
		}
		d.hist[min(r, histHalf)]++
	}
	if shift >= illumDiff*unit || shift <= -illumDiff*unit || beyond >= d.illumSamples {
		// Most of the frame changed at once: re-learn the background from this frame.
		d.rememberFrame(0)
		for k, r := range res {
			bg[k] = (r + bg[k]>>bgFrac) << bgFrac
		}
		return Result{Illumination: true}, nil
	}
	mad := int32(median(d.hist, len(d.sample)))
	// σ ≈ 1.4826·MAD; the floor is capped so that strong motion shows through any noise.
	floor := min(mad*noiseSigmas*14826/10000, diffLeast*unit)
	thr := max(d.diff16, floor)

	changed := 0
	dShift := shift - d.prevShift
	for _, sp := range d.runs {
		rs, bs := res[sp.from:sp.to], bg[sp.from:sp.to]
		bs = bs[:len(rs)]
		ps, st := d.prev[sp.from:sp.to], d.still[sp.from:sp.to]
		ps, st = ps[:len(rs)], st[:len(rs)]
		for k, raw := range rs {
			b := bs[k]
			cur := raw + b>>bgFrac
			r := abs(raw - shift)
			rate := d.rate
			if r > thr {
				// Changed from the background: motion, unless the block has kept still for
				// long enough to be something that arrived or left and stayed so.
				if abs(cur-ps[k]-dShift) > thr {
					st[k] = 0
				} else if st[k] < d.stationary {
					st[k]++
				}
				if st[k] >= d.stationary {
					bs[k] = cur << bgFrac // absorb it into the background at once
					ps[k] = cur
					continue
				}
				changed++
				rate = d.fgRate
			} else {
				st[k] = 0
			}
			ps[k] = cur
			// The update is rate·(cur<<bgFrac − bg), with cur = raw + bg>>bgFrac.
			bs[k] = b + (raw*rate)>>(16-bgFrac) - ((b&fracMask)*rate)>>16
		}
	}
	d.prevShift = shift
	return Result{
		Area:   float64(changed) / float64(d.unmasked),
		Score:  float64(changed) / float64(changed+d.minBlocks),
		Motion: changed >= d.minBlocks,
	}, nil
}

// rememberFrame records the current block means as the previous frame's and forgets
// stillness (after warm-up frames and re-learnt illumination changes).
func (d *Detector) rememberFrame(shift int32) {
	for k, r := range d.res {
		d.prev[k] = r + d.bg[k]>>bgFrac
	}
	clear(d.still)
	d.prevShift = shift
}

// learnWarmup averages the warm-up frames into the background with equal weights.
func (d *Detector) learnWarmup() {
	n := int32(d.frames)
	for k, r := range d.res {
		cur := (r + d.bg[k]>>bgFrac) << bgFrac
		if n == 0 {
			d.bg[k] = cur
			continue
		}
		d.bg[k] += (cur - d.bg[k]) / (n + 1)
	}
	d.frames++
}

// median returns the bin that holds the median of n counted values.
func median(hist []uint32, n int) int {
	half := uint32((n + 1) / 2)
	var sum uint32
	for b, c := range hist {
		sum += c
		if sum >= half {
			return b
		}
	}
	return len(hist) - 1
}

// abs returns |v| without a branch, which the random signs of noise would mispredict;
// v is never the smallest int32 here.
func abs(v int32) int32 {
	m := v >> 31
	return (v ^ m) - m
}

// gcd returns the greatest common divisor of a and b.
func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Masks for the SWAR block sums: bytes into 16-bit lanes, 16-bit lanes into 32-bit lanes.
const (
	lanes8  = 0x00ff00ff00ff00ff
	lanes16 = 0x0000ffff0000ffff
)

// differences sets d.res to every block's mean minus its background. Full rows of blocks
// go through blockRow; the right and bottom edges, when the size is not a multiple of the
// block, go pixel by pixel.
func (d *Detector) differences(frame []byte) {
	w, h, stride, bw := d.w, d.h, d.stride, d.bw
	wide := w &^ 7
	for by := range d.bh {
		y0 := by * blk
		res := d.res[by*bw : by*bw+bw]
		bg := d.bg[by*bw : by*bw+bw]
		bg = bg[:len(res)]
		if y0+blk > h {
			d.edgeRow(frame, y0, res, bg)
			continue
		}
		o := y0 * stride
		r0 := frame[o : o+w]
		r1 := frame[o+stride : o+stride+w]
		r2 := frame[o+2*stride : o+2*stride+w]
		r3 := frame[o+3*stride : o+3*stride+w]
		blockRow(res[:wide/blk], bg[:wide/blk], r0[:wide], r1[:wide], r2[:wide], r3[:wide])
		for j := wide / blk; j < bw; j++ {
			x0, x1 := j*blk, min(j*blk+blk, w)
			var sum int32
			for x := x0; x < x1; x++ {
				sum += int32(r0[x]) + int32(r1[x]) + int32(r2[x]) + int32(r3[x])
			}
			res[j] = sum*unit/int32((x1-x0)*blk) - bg[j]>>bgFrac
		}
	}
}

// blockRow sets res to the differences from bg of the blocks in four rows of pixels, eight
// pixels (two blocks) at a time in 64-bit words; the rows are a multiple of 8 pixels long
// and res a quarter of that. It is a function of its own so that the compiler keeps its
// few variables in registers.
func blockRow(res, bg []int32, r0, r1, r2, r3 []byte) {
	n := len(r0)
	r1, r2, r3 = r1[:n], r2[:n], r3[:n]
	res = res[:n/blk]
	bg = bg[:len(res)]
	for x := 0; x+8 <= n; x += 8 {
		// Each 16-bit lane sums two neighbouring pixels of four rows: at most 2040.
		acc := pairs(load64(r0[x:x+8])) + pairs(load64(r1[x:x+8])) +
			pairs(load64(r2[x:x+8])) + pairs(load64(r3[x:x+8]))
		acc = acc&lanes16 + acc>>16&lanes16
		j := x >> 2 // x / blk, without the sign fix-up of a signed division
		// A full block's sum is its mean in 1/16 grey level.
		res[j] = int32(uint32(acc)) - bg[j]>>bgFrac
		res[j+1] = int32(acc>>32) - bg[j+1]>>bgFrac
	}
}

// edgeRow handles a bottom row of blocks shorter than a block.
func (d *Detector) edgeRow(frame []byte, y0 int, res, bg []int32) {
	rows := d.h - y0
	for j := range res {
		x0, x1 := j*blk, min(j*blk+blk, d.w)
		var sum int32
		for y := y0; y < d.h; y++ {
			for _, p := range frame[y*d.stride+x0 : y*d.stride+x1] {
				sum += int32(p)
			}
		}
		res[j] = sum*unit/int32((x1-x0)*rows) - bg[j]>>bgFrac
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
