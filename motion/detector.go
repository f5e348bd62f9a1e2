// Package motion finds motion in small GRAY8 frames and turns it into recording events.
// Detector compares each frame with a learnt background and reports a score per frame;
// Gate applies start hysteresis, post-roll, pre-roll and event merging to those results.
// It is pure Go, takes its time from the caller and allocates nothing per frame.
//
// The detector is built for outdoor scenes: it compensates the shift of the whole picture
// (a camera on a pole in the wind), models global brightness changes with a tone curve
// (auto-exposure, dawn, highlights that clip at white), learns how much each part of the
// picture flickers on its own (foliage, water), groups changed blocks into regions, drops
// regions whose change is a smooth re-lighting of the same texture (headlights, cloud
// shadows), and reports motion only for a region that persists over consecutive frames
// (rain, snow and insects do not).
package motion

import (
	"fmt"
	"math"
	"math/bits"
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
	// DefaultPersistFrames: a region must be seen in this many consecutive analysis
	// frames, in place or moving coherently, before it counts as motion.
	DefaultPersistFrames = 2
	// DefaultMaxShift is the largest frame-to-background shift of the whole picture, in
	// pixels of the analysed frame, that the detector compensates.
	DefaultMaxShift = 4
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
	// illumDiff is the change, in grey levels, that counts towards an illumination change.
	// It does not depend on Sensitivity, so that a higher sensitivity never turns a frame
	// into an illumination change and so never detects less.
	illumDiff = 10
	// illumRatio is the share of the unmasked area that must change by illumDiff beyond the
	// frame's tone curve for the change to be global (an IR switch, a lamp in view).
	illumRatio = 0.5
	// sampleBlocks is about how many blocks the median, tone curve and noise estimates look
	// at.
	sampleBlocks = 512
	// noiseSigmas sets the noise floor: the per-block threshold is at least this many
	// estimated noise standard deviations, so a grainy night image does not trigger.
	noiseSigmas = 5
	// flickerSigmas2 is the square of how many standard deviations of its own learnt
	// flicker a block must change by: swaying leaves and rippling water learn a wide
	// spread and stop counting.
	flickerSigmas2 = 9
	// Sensitivity maps geometrically onto these ends: at 0 a block must change by 40 grey
	// levels and a region must cover 0.4% of the area; at 1, 5 grey levels and 0.006% (a
	// single block of a 320x180 frame). Persistence, not size, keeps noise out, so that a
	// distant person is seen.
	diffLeast, diffMost = 40.0, 5.0
	areaLeast, areaMost = 0.004, 0.0000625
	// minLearnRate keeps the fixed-point background update able to move at all.
	minLearnRate = 0.001
	// maxSide bounds frame sides; motion runs on small frames and the block sums are 32-bit.
	maxSide = 4096
	// invalid marks a block whose pixels fell outside the frame after the shift
	// compensation: it is neither compared nor learnt in that frame.
	invalid = math.MinInt32 / 2
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
	// 5 grey levels (never less than five times the noise measured in the frame), and a
	// region must cover 0.4% down to 0.006% of the unmasked area. Zero selects
	// DefaultSensitivity (about 14 grey levels and 0.05%, 2 blocks of a 320x180 frame);
	// use a small value such as 0.01 for the least sensitive setting.
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
	// PersistFrames, 1 to 100, zero for the default: see DefaultPersistFrames. 1 reports
	// a region the first time it is seen (and rain with it).
	PersistFrames int
	// MaxShift, 0 to 16 pixels, zero for the default: see DefaultMaxShift. Negative turns
	// the compensation of camera shake off.
	MaxShift int
}

// Region is a moving region of a frame: its bounding box in 0..1 frame coordinates (like
// a Normalized mask) and its size.
type Region struct {
	Rect
	// Area is the fraction of the unmasked area the region's changed blocks cover.
	Area float64
	// Frames is how many consecutive analysis frames the region has been followed for.
	Frames int
}

// Result describes one frame. Score and Area are zero on warm-up and illumination frames.
type Result struct {
	// Score in [0, 1) grows with the size of the largest region that persisted: n/(n+needed),
	// counted in blocks, so it is 0.5 exactly at the size threshold and Score >= 0.5 exactly
	// when Motion is true. A region not yet seen for long enough scores below 0.5.
	Score float64
	// Area is the fraction of the unmasked area covered by the moving regions.
	Area float64
	// Motion is true when a region big enough persisted, after warm-up and outside an
	// illumination change.
	Motion bool
	// Illumination is true when the frame changed as a whole (lights switched, an IR
	// day/night switch): it brightened or darkened by 10 grey levels or more, or half of it
	// changed by that much beyond the frame's tone curve. The background was re-learnt from
	// this frame and no motion is reported.
	Illumination bool
	// Warmup is true while the first background is being learnt.
	Warmup bool
	// Regions are the moving regions, largest first; nil without motion. The slice belongs
	// to the Detector and is overwritten by the next Process: copy what you keep.
	Regions []Region
	// ShiftX and ShiftY are the shift of the whole picture against the background, in
	// pixels, that was compensated (camera shake).
	ShiftX, ShiftY int
}

// Detector finds motion in a sequence of GRAY8 frames of one size. Frames are split into
// blocks of BlockSize x BlockSize pixels whose means are compared with a running-average
// background, after aligning the frame with the background (shake), removing the frame's
// global tone change (exposure, dawn, clipping) and with a threshold raised above the
// frame's estimated noise and each block's learnt flicker. Changed blocks are grouped into
// regions that are followed from frame to frame. A Detector is not safe for concurrent use.
type Detector struct {
	w, h, stride int
	frameLen     int
	bw, bh       int // blocks per row and per column

	diff16    int32 // per-block difference threshold, 1/16 grey level
	minArea   float64
	unmasked  int // blocks no mask touches
	minBlocks int // blocks a region needs for motion
	persist   int32
	// longTrack is how many frames of following make a region of any size motion (see
	// tracker.follow).
	longTrack int32
	maxShift  int
	// illumSamples sampled blocks beyond illumDiff make an illumination change.
	illumSamples int
	// rate and fgRate are learn rates in 1/65536: difference·rate and fraction·rate
	// both fit in 32 bits.
	rate, fgRate int32
	warmup       int

	// Per-block state, row by row. Masked blocks are computed too (it is cheaper than
	// skipping them) but never counted: runs lists the unmasked stretches of blocks.
	cur  []int32 // the frame's block means, 1/16 grey level (or invalid)
	bg   []int32 // background mean, 1/16 grey level << bgFrac
	vari []int32 // learnt variance of the residual, (1/16 grey level)² >> varShift
	runs []span
	// prev is cur of the previous frame (the two swap every frame); still is how many
	// frames in a row a block has differed from the background without changing itself,
	// as of the frame candAt (the last classified frame in which it was a candidate for
	// change): a block that was not one in the frame before has kept still for 0 frames.
	prev       []int32
	still      []uint16
	candAt     []uint32
	prevShift  int32
	stationary uint16
	// shaken counts down the frames since the last one shifted against the background
	// (from shakeFrames): while it is above zero the camera is taken to shake. A shaking
	// camera also has frames that come out unshifted, and the frame after one of them
	// is shifted again as often as not.
	shaken int

	// The median and noise estimates look at about sampleBlocks unmasked blocks spread
	// over the frame.
	sample []int32
	// fitAt are every fourth sampled block and their pixel positions, for shiftFits.
	fitAt []fitBlock
	tone  toneCurve

	stab   stabilizer
	blobs  blobs
	tracks tracker

	frames int // frames learnt since Reset, up to warmup
	parity int // which half of the blocks learns its flicker this frame
}

// span is a stretch [from, to) of block indices.
type span struct{ from, to int32 }

// shakeFrames is how many frames after the last shifted one the camera is still taken to
// shake (projections first, then the blocks at the shift; a still camera has the block
// pass give the projections). Which way the frame is read changes no value.
const shakeFrames = 8

// varShift scales the stored variance so that it fits 32 bits.
const varShift = 2

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
	if o.PersistFrames == 0 {
		o.PersistFrames = DefaultPersistFrames
	}
	if o.PersistFrames < 1 || o.PersistFrames > 100 {
		return nil, fmt.Errorf("motion: %d persist frames is out of range: use 1 to 100 (0 means %d)", o.PersistFrames, DefaultPersistFrames)
	}
	switch {
	case o.MaxShift == 0:
		o.MaxShift = DefaultMaxShift
	case o.MaxShift < 0:
		o.MaxShift = 0
	case o.MaxShift > 16:
		return nil, fmt.Errorf("motion: max shift %d is out of range: use 0 to 16 pixels (0 means %d, negative turns shake compensation off)", o.MaxShift, DefaultMaxShift)
	}

	d := &Detector{
		w: o.Width, h: o.Height, stride: o.Stride,
		frameLen: o.Stride * o.Height,
		bw:       (o.Width + blk - 1) / blk,
		bh:       (o.Height + blk - 1) / blk,
		warmup:   o.WarmupFrames,
		persist:  int32(o.PersistFrames),
		maxShift: o.MaxShift,
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
	d.tone.sr, d.tone.sg = make([]int32, len(d.sample)), make([]uint8, len(d.sample))
	for i := 0; i < len(d.sample); i += 4 {
		k := int(d.sample[i])
		d.fitAt = append(d.fitAt, fitBlock{k: int32(k), x: int32(k % d.bw * blk), y: int32(k / d.bw * blk)})
	}
	nb := len(masked)
	d.cur = make([]int32, nb)
	d.bg = make([]int32, nb)
	d.vari = make([]int32, nb)
	d.prev = make([]int32, nb)
	d.still = make([]uint16, nb)
	d.candAt = make([]uint32, nb)
	d.stationary = uint16(o.StationaryFrames)
	d.stab = newStabilizer(d.w, d.h)
	d.blobs = newBlobs(d.bw, d.bh)
	d.tracks = newTracker(nb)

	s := o.Sensitivity
	d.diff16 = int32(math.Round(diffLeast * math.Pow(diffMost/diffLeast, s) * unit))
	d.minArea = areaLeast * math.Pow(areaMost/areaLeast, s)
	d.minBlocks = max(1, int(math.Ceil(d.minArea*float64(d.unmasked)-1e-9)))
	d.longTrack = max(d.persist+1, longTrack)
	d.illumSamples = max(1, int(math.Ceil(illumRatio*float64(len(d.sample)))))
	d.rate = max(1, int32(math.Round(o.LearnRate*rateOne)))
	d.fgRate = max(1, d.rate/4)
	return d, nil
}

// Thresholds returns what Sensitivity derived: the change of a block's mean, in grey levels,
// that counts as changed (before the noise floor raises it), and the fraction of the
// unmasked area a region must cover for motion.
func (d *Detector) Thresholds() (diff, area float64) {
	return float64(d.diff16) / unit, d.minArea
}

// Reset forgets the background; the next WarmupFrames frames learn it again. Call it after
// the camera moved or the pipeline restarted with a different view.
func (d *Detector) Reset() {
	d.frames = 0
	d.tracks.clear()
	clear(d.blobs.lit)
	d.tracks.clutterN, d.tracks.clutterSz = 0, 0
}

// Process compares frame, Height rows of Stride bytes of 8-bit luma, with the background and
// then updates the background. It returns an error, and changes nothing, when the frame has
// the wrong length.
func (d *Detector) Process(frame []byte) (Result, error) {
	if len(frame) != d.frameLen {
		return Result{}, fmt.Errorf("motion: frame has %d bytes, want %d (%dx%d GRAY8, stride %d): check the size of the frames sent to the detector",
			len(frame), d.frameLen, d.w, d.h, d.stride)
	}
	d.cur, d.prev = d.prev, d.cur
	// Align the frame with the background: the shift of the whole picture is measured on
	// row and column projections and the blocks are read again at that offset.
	// On a still camera the block pass gives the projections too; while the camera shakes
	// (the last frame was shifted) the projections come first, so that the blocks are
	// read once, at the shift.
	sx, sy := 0, 0
	fused := d.maxShift > 0 && d.stab.fused
	blocksAt0, blocksAtShift := false, false
	switch {
	case d.maxShift > 0 && !fused:
		d.stab.project(frame, d.stride)
	case fused && d.shaken > 0 && d.frames > 0:
		d.projections(frame)
	default:
		d.differences(frame, 0, 0, fused)
		blocksAt0 = true
	}
	if d.maxShift > 0 {
		if fused {
			d.stab.gradients()
		}
		if d.frames == 0 {
			d.stab.setReference()
		} else {
			sx, sy = d.stab.estimate(d.maxShift)
			if sx != 0 || sy != 0 {
				if !blocksAt0 {
					// The check below takes the blocks at the shift from cur.
					d.differences(frame, sx, sy, false)
					blocksAtShift = true
				}
				if !d.shiftFits(frame, sx, sy, blocksAtShift) {
					// A moving object or a change of light fooled the projections: the
					// blocks match the background better where they are.
					sx, sy = 0, 0
					d.stab.sx, d.stab.sy = 0, 0
				}
			}
		}
	}
	shifted := sx != 0 || sy != 0
	if shifted {
		d.shaken = shakeFrames
	} else if d.shaken > 0 {
		d.shaken--
	}
	switch {
	case shifted && !blocksAtShift:
		d.differences(frame, sx, sy, false)
	case !shifted && !blocksAt0:
		d.differences(frame, 0, 0, false)
	}
	if d.frames < d.warmup {
		d.rememberFrame(0)
		d.learnWarmup()
		return Result{Warmup: true}, nil
	}

	// The frame's tone curve (the median difference per background brightness) is the
	// change common to the whole frame (auto-exposure, dawn, clipped highlights); motion is
	// measured beyond it. The median absolute deviation around it estimates the noise
	// without being fooled by a moving object.
	shift, beyond, mad := d.tone.fit(d)
	if shift >= illumDiff*unit || shift <= -illumDiff*unit || beyond >= d.illumSamples {
		// Most of the frame changed at once: re-learn the background from this frame.
		d.rememberFrame(0)
		for k, c := range d.cur {
			if c != invalid {
				d.bg[k] = c << bgFrac
			}
		}
		if d.maxShift > 0 {
			d.stab.update(sx, sy, true)
		}
		d.tracks.clear()
		return Result{Illumination: true, ShiftX: sx, ShiftY: sy}, nil
	}
	// σ ≈ 1.4826·MAD; the floor is capped so that strong motion shows through any noise.
	floor := min(mad*noiseSigmas*14826/10000, diffLeast*unit)
	thr := max(d.diff16, floor)

	d.classify(shift, thr)
	d.blobs.findRegions(d)
	need, best, moving := d.tracks.follow(&d.blobs, d.minBlocks, d.persist, d.longTrack)
	d.learn()
	if d.maxShift > 0 {
		d.stab.update(sx, sy, false)
	}
	d.prevShift = shift

	r := Result{ShiftX: sx, ShiftY: sy}
	if best > 0 {
		r.Score = float64(best) / float64(best+need)
	}
	if moving > 0 {
		r.Motion = true
		d.regionsOut()
		r.Regions = d.tracks.out
		r.Area = float64(moving) / float64(d.unmasked)
	} else {
		r.Score = min(r.Score, 0.49)
	}
	return r, nil
}

// shiftFits reports whether a sample of blocks read at the shift (sx, sy) differ less from
// the background, in sum, than read in place. cur holds the blocks of one of the two
// positions, at the shift when atShift, else in place; the other is read from the frame.
// (For the full blocks it samples, a block of cur is exactly blockSum at its position.)
func (d *Detector) shiftFits(frame []byte, sx, sy int, atShift bool) bool {
	w, h, stride, bg, cur := d.w, d.h, d.stride, d.bg, d.cur
	ox, oy := sx, sy // where the blocks not in cur are read
	if atShift {
		ox, oy = 0, 0
	}
	// Only blocks whole at both places count: x0 and y0 in [lo, hi].
	xlo, ylo := max(0, -sx), max(0, -sy)
	xhi, yhi := min(w-blk-sx, w-blk), min(h-blk-sy, h-blk)
	var inCur, read int64
	for _, f := range d.fitAt {
		x0, y0 := int(f.x), int(f.y)
		if x0 < xlo || y0 < ylo || x0 > xhi || y0 > yhi {
			continue
		}
		b := bg[f.k] >> bgFrac
		inCur += int64(abs(cur[f.k] - b))
		read += int64(abs(blockSum(frame, stride, x0+ox, y0+oy) - b))
	}
	if atShift {
		return inCur < read
	}
	return read < inCur
}

// fitBlock is a block shiftFits looks at: its index and the position of its first pixel.
type fitBlock struct{ k, x, y int32 }

// blockSum is the sum of the block of pixels at x, y: its mean in 1/16 grey level.
func blockSum(frame []byte, stride, x, y int) int32 {
	o := y*stride + x
	b := frame[o : o+3*stride+blk]
	// Two rows of four pixels a word; their neighbouring pixels' sums in 16-bit lanes,
	// two words' worth at most 1020 a lane.
	v := uint64(load32(b[:4])) | uint64(load32(b[stride:stride+4]))<<32
	u := uint64(load32(b[2*stride:2*stride+4])) | uint64(load32(b[3*stride:3*stride+4]))<<32
	s := pairs(v) + pairs(u)
	s += s >> 16 // lanes 0 and 2: two rows each
	return int32(uint16(s)) + int32(uint16(s>>32))
}

// load32 reads 4 bytes little-endian; the compiler turns it into one load.
func load32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// classify marks the blocks that changed beyond the tone curve, the noise floor and their
// own flicker, lists them in raster order, absorbs stationary changes into the background,
// and updates the background and the flicker of the blocks that did not change (learn
// does the changed ones once their regions are known).
//
// It runs in three passes so that each inner loop keeps its few slices in registers (one
// loop over everything spilled them to the stack and cost twice as much): the test of
// every block, which lists the candidates; the learning of half the unchanged blocks; and
// the candidates, few on most frames.
func (d *Detector) classify(shift, thr int32) {
	cur, bg, vari := d.cur, d.bg, d.vari
	changed := d.blobs.changed
	// Only last frame's changed blocks are marked: unmark them.
	for _, k := range d.blobs.list {
		changed[k] = 0
	}
	d.blobs.now++
	lut := &d.tone.lut
	for _, sp := range d.runs {
		if d.tone.flat {
			testBlocksFlat(cur[sp.from:sp.to], bg[sp.from:sp.to], vari[sp.from:sp.to], changed[sp.from:sp.to], lut[0], thr)
		} else {
			testBlocks(cur[sp.from:sp.to], bg[sp.from:sp.to], vari[sp.from:sp.to], changed[sp.from:sp.to], lut, thr)
		}
	}
	cand := marked(d.blobs.list[:0], changed)
	// Learn at the full rate, the flicker too away from moving regions: half the blocks
	// each frame at twice the rate (both change slowly).
	d.parity ^= 1
	rate2 := min(2*d.rate, rateOne)
	for _, sp := range d.runs {
		if d.tone.flat {
			learnStillFlat(cur[sp.from:sp.to], bg[sp.from:sp.to], vari[sp.from:sp.to], changed[sp.from:sp.to],
				d.tracks.near[sp.from:sp.to], (d.parity^int(sp.from))&1, lut[0], d.rate, rate2)
		} else {
			learnStill(cur[sp.from:sp.to], bg[sp.from:sp.to], vari[sp.from:sp.to], changed[sp.from:sp.to],
				d.tracks.near[sp.from:sp.to], (d.parity^int(sp.from))&1, lut, d.rate, rate2)
		}
	}
	// The candidates: changed from the background, and motion unless the block has kept
	// still for long enough to be something that arrived or left and stayed so.
	dShift := shift - d.prevShift
	strong := 2 * thr
	prev, still, candAt := d.prev, d.still, d.candAt
	now := uint32(d.blobs.now)
	list := cand[:0] // written behind the reading
	for _, k := range cand {
		c := cur[k]
		if c == invalid {
			changed[k] = 0
			continue
		}
		if candAt[k] != now-1 {
			still[k] = 0 // it did not differ from the background in the frame before
		}
		candAt[k] = now
		bv := bg[k] >> bgFrac
		if abs(c-prev[k]-dShift) > thr {
			still[k] = 0
		} else if still[k] < d.stationary {
			still[k]++
		}
		if still[k] >= d.stationary {
			bg[k] = c << bgFrac // absorb it into the background at once
			changed[k] = 0
			continue
		}
		changed[k] = 1
		if abs(c-bv-lut[uint8(bv>>4)]) >= strong {
			changed[k] = 2
		}
		list = append(list, k)
	}
	d.blobs.list = list
}

// testBlocks is classify's test of a stretch of blocks: it marks the candidates (changed
// beyond thr and their flicker, or invalid) in cs. A function of its own with few
// variables keeps them in registers; unchanged blocks store nothing. (One loop that also
// learns, below, costs more than the two.)
func testBlocks(cur, bs, vs []int32, cs []uint8, lut *[256]int32, thr int32) {
	bs, vs, cs = bs[:len(cur)], vs[:len(cur)], cs[:len(cur)]
	span := uint32(2 * thr)
	for k, c := range cur {
		bv := bs[k] >> bgFrac
		// An invalid block's mean is about −2³⁰: it becomes a candidate, sorted out later.
		e := c - bv - lut[uint8(bv>>4)] // bv is a block mean, 0 to 255·16
		// |e| > thr in one comparison (thr > 0, and an invalid block's e wraps far above).
		if uint32(e+thr) > span && int64(e)*int64(e) > flickerSigmas2*int64(vs[k])<<varShift {
			cs[k] = 1
		}
	}
}

// testBlocksFlat is testBlocks for a flat tone curve, shift at every grey level (no
// change of exposure or light, the usual frame). Inlined into classify, its loop would
// share classify's registers and spill.
//
//go:noinline
func testBlocksFlat(cur, bs, vs []int32, cs []uint8, shift, thr int32) {
	bs, vs, cs = bs[:len(cur)], vs[:len(cur)], cs[:len(cur)]
	span := uint32(2 * thr)
	for k, c := range cur {
		e := c - bs[k]>>bgFrac - shift
		if uint32(e+thr) > span && int64(e)*int64(e) > flickerSigmas2*int64(vs[k])<<varShift {
			cs[k] = 1
		}
	}
}

// learnStill updates the background (at rate2) and, outside ns, the flicker (at rate) of
// every other block of a stretch from k0 (0 or 1), skipping the candidates marked in cs.
func learnStill(cur, bs, vs []int32, cs, ns []uint8, k0 int, lut *[256]int32, rate, rate2 int32) {
	bs, vs = bs[:len(cur)], vs[:len(cur)]
	cs, ns = cs[:len(cur)], ns[:len(cur)]
	r, r2 := int64(rate), rate2
	for k := k0 & 1; k < len(cur); k += 2 {
		if cs[k] != 0 {
			continue
		}
		b := bs[k]
		raw, g := cur[k]-b>>bgFrac, uint8(b>>bgFrac>>4)
		// The update is rate·(cur<<bgFrac − bg), with cur = raw + bg>>bgFrac.
		bs[k] = b + (raw*r2)>>(16-bgFrac) - ((b&fracMask)*r2)>>16
		if ns[k] == 0 {
			e := int64(raw - lut[g])
			v := int64(vs[k])
			// e²>>varShift is at most 4080²/4, so v stays far below 2³¹.
			vs[k] = int32(v + ((e*e>>varShift-v)*r)>>15)
		}
	}
}

// learnStillFlat is learnStill for a flat tone curve, shift at every grey level: the
// usual frame, without the curve's lookup in the loop.
//
//go:noinline
func learnStillFlat(cur, bs, vs []int32, cs, ns []uint8, k0 int, shift, rate, rate2 int32) {
	bs, vs = bs[:len(cur)], vs[:len(cur)]
	cs, ns = cs[:len(cur)], ns[:len(cur)]
	r, r2 := int64(rate), rate2
	for k := k0 & 1; k < len(cur); k += 2 {
		if cs[k] != 0 {
			continue
		}
		b := bs[k]
		raw := cur[k] - b>>bgFrac
		bs[k] = b + (raw*r2)>>(16-bgFrac) - ((b&fracMask)*r2)>>16 // b is done with
		if ns[k] == 0 {
			e := int64(raw - shift)
			v := int64(vs[k])
			vs[k] = int32(v + ((e*e>>varShift-v)*r)>>15)
		}
	}
}

// marked appends the indices of the non-zero entries of cs to list, eight at a time.
func marked(list []int32, cs []uint8) []int32 {
	m := len(cs)
	cs = cs[:m:m] // with i < m-7, the loads need no bounds check
	i := 0
	for ; i < m-7; i += 8 {
		// The non-zero bytes of the word, lowest first, without a branch per byte.
		for v := load64(cs[i : i+8]); v != 0; {
			b := bits.TrailingZeros64(v) &^ 7
			list = append(list, int32(i+b>>3))
			v &^= 0xff << b
		}
	}
	for ; i < m; i++ {
		if cs[i] != 0 {
			list = append(list, int32(i))
		}
	}
	return list
}

// learn updates the background and the flicker of the changed blocks: four times faster
// than the full rate where a region was only re-lit, four times slower where something
// else changed, and the flicker not at all in or next to moving regions or in re-lit ones.
func (d *Detector) learn() {
	cur, bg, vari := d.cur, d.bg, d.vari
	label, kind, lit, near := d.blobs.label, d.blobs.kind, d.blobs.lit, d.tracks.near
	lut := &d.tone.lut
	for _, k := range d.blobs.list {
		b := bg[k]
		raw := cur[k] - b>>bgFrac
		rate, varRate := d.fgRate, d.fgRate
		switch kind[label[k]] {
		case kindLight:
			lit[k] = d.blobs.now + litFrames
			// Light comes and goes: follow it fast, and it is no flicker.
			rate, varRate = min(rateOne, 4*d.rate), 0
		case kindMoving:
			varRate = 0
		}
		if varRate > 0 && near[k] == 0 {
			e := int64(raw - lut[min(max(b>>bgFrac, 0), 255*unit)>>4])
			v := int64(vari[k])
			v += ((e*e>>varShift - v) * int64(varRate)) >> 16
			vari[k] = int32(min(v, math.MaxInt32))
		}
		bg[k] = b + (raw*rate)>>(16-bgFrac) - ((b&fracMask)*rate)>>16
	}
}

// regionsOut converts the moving regions' boxes from blocks to 0..1 frame coordinates.
func (d *Detector) regionsOut() {
	t := &d.tracks
	for i := range t.out {
		b := t.outBox[i]
		x0 := float64(b[0]*blk) / float64(d.w)
		y0 := float64(b[1]*blk) / float64(d.h)
		x1 := min(float64(b[2]*blk)/float64(d.w), 1)
		y1 := min(float64(b[3]*blk)/float64(d.h), 1)
		t.out[i].Rect = Rect{X: x0, Y: y0, W: x1 - x0, H: y1 - y0}
		t.out[i].Area = float64(t.outN[i]) / float64(d.unmasked)
	}
}

// rememberFrame forgets stillness (after warm-up frames and re-learnt illumination
// changes); prev already holds this frame's block means for the next.
func (d *Detector) rememberFrame(shift int32) {
	clear(d.still)
	d.prevShift = shift
}

// learnWarmup averages the warm-up frames into the background with equal weights, and
// their spread into the flicker.
func (d *Detector) learnWarmup() {
	n := int32(d.frames)
	for k, c := range d.cur {
		if c == invalid {
			continue
		}
		cur := c << bgFrac
		if n == 0 {
			d.bg[k] = cur
			d.vari[k] = 0
			continue
		}
		old := d.bg[k]
		d.bg[k] += (cur - old) / (n + 1)
		// Welford: (x − old mean)(x − new mean) over the frames so far.
		e := int64((cur-old)>>bgFrac) * int64((cur-d.bg[k])>>bgFrac) >> varShift
		d.vari[k] += int32((e - int64(d.vari[k])) / int64(n+1))
	}
	if d.maxShift > 0 && n > 0 {
		d.stab.update(d.stab.sx, d.stab.sy, false)
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
