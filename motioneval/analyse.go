package motioneval

import (
	"fmt"
	"time"

	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/motion"
)

// epoch anchors the gate's clock: evaluation time is media time.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return epoch.Add(time.Duration(sec * float64(time.Second))) }

func secs(t time.Time) float64 { return t.Sub(epoch).Seconds() }

// analyser runs the detector and the gate over analysis frames as they are decoded, keeping
// only each frame's result, so that a long file costs no more memory than a short one.
type analyser struct {
	o      Options
	dopts  motion.Options
	det    *motion.Detector
	gate   *motion.Gate
	frames []Frame
	spent  time.Duration
	closed []closedEvent
	open   *motion.Event
	err    error
	// The strongest motion frame since the last event closed, for its thumbnail.
	peak peakFrame
}

// closedEvent is an event and when the gate ended it: when a motion recording stops.
type closedEvent struct {
	motion.Event
	closedAt float64
	peak     peakFrame
}

// peakFrame is a frame kept for a thumbnail: half the analysis size.
type peakFrame struct {
	score   float64
	at      float64
	regions []motion.Region
	data    []byte
	w, h    int
}

// keep stores a half-size copy of the frame as the peak.
func (p *peakFrame) keep(s gst.Sample, stride int, res motion.Result, sec float64) {
	p.score, p.at = res.Score, sec
	p.regions = append(p.regions[:0], res.Regions...)
	p.w, p.h = s.Width/2, s.Height/2
	if cap(p.data) < p.w*p.h {
		p.data = make([]byte, p.w*p.h)
	}
	p.data = p.data[:p.w*p.h]
	for y := range p.h {
		for x := range p.w {
			i := 2*y*stride + 2*x
			p.data[y*p.w+x] = byte((int(s.Data[i]) + int(s.Data[i+1]) + int(s.Data[i+stride]) + int(s.Data[i+stride+1]) + 2) / 4)
		}
	}
}

func newAnalyser(o Options) (*analyser, error) {
	dopts, gopts := motion.FromConfig(o.Config)
	gate, err := motion.NewGate(gopts)
	if err != nil {
		return nil, err
	}
	return &analyser{o: o, dopts: dopts, gate: gate}, nil
}

// frame analyses one frame taken sec seconds into the video; frames come in time order.
func (a *analyser) frame(s gst.Sample, sec float64) {
	if a.err != nil || s.Height == 0 {
		return
	}
	if a.det == nil { // the first frame gives the size the pipeline settled on
		a.dopts.Width, a.dopts.Height = s.Width, s.Height
		a.dopts.Stride = len(s.Data) / s.Height // rows padded to 4 bytes
		if a.det, a.err = motion.NewDetector(a.dopts); a.err != nil {
			return
		}
	}
	if s.Width != a.dopts.Width || s.Height != a.dopts.Height {
		return
	}
	t0 := time.Now()
	res, err := a.det.Process(s.Data)
	a.spent += time.Since(t0)
	if err != nil {
		a.err = err
		return
	}
	if res.Motion && res.Score > a.peak.score {
		a.peak.keep(s, a.dopts.Stride, res, sec)
	}
	res.Regions = append([]motion.Region(nil), res.Regions...) // the detector reuses its slice
	a.frames = append(a.frames, Frame{At: sec, Result: res})
	if ev, ok := a.gate.Update(at(sec), res); ok {
		a.event(ev, sec)
	}
}

func (a *analyser) event(ev motion.Event, sec float64) {
	switch ev.Kind {
	case motion.EventStart:
		a.open = &ev
	case motion.EventEnd:
		if a.open != nil {
			a.closed = append(a.closed, closedEvent{ev, sec, a.peak})
			a.peak = peakFrame{}
			a.open = nil
		}
	}
}

// report ends an open event at the video's end and builds the report.
func (a *analyser) report(labels []Interval, units []encodedUnit) (*Report, error) {
	if a.err != nil {
		return nil, fmt.Errorf("analysing %s: %w", a.o.Video, a.err)
	}
	last := units[len(units)-1].at
	if ev, ok := a.gate.Flush(at(last)); ok {
		a.event(ev, last)
	}
	c := a.o.Config.Motion
	r := &Report{Video: a.o.Video, Threshold: 0.5, Labels: labels, EncodedFrames: len(units), Duration: last, Frames: a.frames,
		PreRoll: c.PreRoll.Seconds(), PostRoll: c.PostRoll.Seconds(), EventGap: c.EventGap.Seconds()}
	if n := len(r.Frames); n > 0 {
		r.DetectorMicros = float64(a.spent.Microseconds()) / float64(n)
		if r.Duration > 0 {
			r.AnalysisFPS = float64(n) / r.Duration
		}
	}
	for _, f := range r.Frames {
		if f.Result.Warmup {
			r.WarmupEnd = f.At
		}
	}
	for _, ev := range a.closed {
		e := Event{
			Start: secs(ev.Start), End: secs(ev.End), PeakScore: ev.PeakScore, PeakArea: ev.PeakArea,
			RecordFrom: keyframeAtOrBefore(units, secs(ev.PreRollFrom)),
			RecordTo:   ev.closedAt,
			Regions:    ev.peak.regions, PeakAt: ev.peak.at,
			Thumb: ev.peak.data, ThumbW: ev.peak.w, ThumbH: ev.peak.h,
		}
		r.Events = append(r.Events, e)
	}
	for _, u := range units {
		r.ContinuousBytes += int64(u.size)
		for _, e := range r.Events {
			if u.at >= e.RecordFrom && u.at <= e.RecordTo {
				r.GatedBytes += int64(u.size)
				break
			}
		}
		for _, l := range labels {
			if u.at >= l.Start-r.PreRoll && u.at <= l.End+r.PostRoll+r.EventGap {
				r.IdealBytes += int64(u.size)
				break
			}
		}
	}
	flagLong(r)
	score(r)
	return r, nil
}

// flagLong marks the events longer than 90% of the video.
func flagLong(r *Report) {
	for i := range r.Events {
		e := &r.Events[i]
		e.Long = r.Duration > 0 && e.End-e.Start > 0.9*r.Duration
	}
}

// keyframeAtOrBefore is where a recording from t can begin (the hub's ring is GOP-aligned).
func keyframeAtOrBefore(units []encodedUnit, t float64) float64 {
	best := 0.0
	for _, u := range units {
		if u.keyframe && u.at <= t {
			best = u.at
		}
	}
	return best
}

// inLabels reports whether t lies in a labelled interval.
func inLabels(labels []Interval, t float64) bool {
	for _, l := range labels {
		if t >= l.Start && t < l.End {
			return true
		}
	}
	return false
}

// score computes precision and recall against the labels, event by event and frame by
// frame, the latencies, and the time recorded outside the labels.
func score(r *Report) {
	if r.Labels == nil {
		return
	}
	hits := 0
	for i := range r.Events {
		e := &r.Events[i]
		hit := false
		for _, l := range r.Labels {
			if e.Start < l.End && e.End > l.Start {
				if !hit {
					e.Latency, e.HasLatency = e.Start-l.Start, true
					r.MaxLatency = max(r.MaxLatency, e.Latency)
				}
				hit = true
			}
		}
		if hit {
			hits++
		} else {
			r.FalseEvents = append(r.FalseEvents, *e)
		}
	}
	r.Precision = 1
	if len(r.Events) > 0 {
		r.Precision = float64(hits) / float64(len(r.Events))
	}
	covered := 0
	for _, l := range r.Labels {
		ok := false
		for _, e := range r.Events {
			// Covered from the pre-roll to its end: the recording began before the motion and
			// lasted past it.
			if e.RecordFrom <= l.Start && e.RecordTo >= l.End {
				ok = true
			}
		}
		if ok {
			covered++
		} else {
			r.Missed = append(r.Missed, l)
		}
	}
	r.Recall = 1
	if len(r.Labels) > 0 {
		r.Recall = float64(covered) / float64(len(r.Labels))
	}

	var tp, fp, fn, tn int
	for _, f := range r.Frames {
		if f.Result.Warmup {
			continue
		}
		truth := inLabels(r.Labels, f.At)
		switch {
		case f.Result.Motion && truth:
			tp++
		case f.Result.Motion:
			fp++
		case truth:
			fn++
		default:
			tn++
		}
	}
	r.FramePrecision, r.FrameRecall = 1, 1
	if tp+fp > 0 {
		r.FramePrecision = float64(tp) / float64(tp+fp)
	}
	if tp+fn > 0 {
		r.FrameRecall = float64(tp) / float64(tp+fn)
	}
	if fp+tn > 0 {
		r.FrameFPRate = float64(fp) / float64(fp+tn)
	}

	// Recorded time outside the labels, on a 10 ms grid (recordings may overlap).
	const step = 0.01
	for t := 0.0; t < r.Duration; t += step {
		rec := false
		for _, e := range r.Events {
			if t >= e.RecordFrom && t < e.RecordTo {
				rec = true
				break
			}
		}
		if rec && !inLabels(r.Labels, t) {
			r.RecordedOutside += step
		}
	}
}
