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
}

// closedEvent is an event and when the gate ended it: when a motion recording stops.
type closedEvent struct {
	motion.Event
	closedAt float64
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
			a.closed = append(a.closed, closedEvent{ev, sec})
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
	r := &Report{Video: a.o.Video, Threshold: 0.5, Labels: labels, EncodedFrames: len(units), Duration: last, Frames: a.frames}
	if n := len(r.Frames); n > 0 {
		r.DetectorMicros = float64(a.spent.Microseconds()) / float64(n)
		if r.Duration > 0 {
			r.AnalysisFPS = float64(n) / r.Duration
		}
	}
	for _, ev := range a.closed {
		r.Events = append(r.Events, Event{
			Start: secs(ev.Start), End: secs(ev.End), PeakScore: ev.PeakScore, PeakArea: ev.PeakArea,
			RecordFrom: keyframeAtOrBefore(units, secs(ev.PreRollFrom)),
			RecordTo:   ev.closedAt,
		})
	}
	for _, u := range units {
		r.ContinuousBytes += int64(u.size)
		for _, e := range r.Events {
			if u.at >= e.RecordFrom && u.at <= e.RecordTo {
				r.GatedBytes += int64(u.size)
				break
			}
		}
	}
	score(r)
	return r, nil
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

// score computes precision and recall against the labels.
func score(r *Report) {
	if r.Labels == nil {
		return
	}
	hits := 0
	for _, e := range r.Events {
		hit := false
		for _, l := range r.Labels {
			if e.Start < l.End && e.End > l.Start {
				hit = true
			}
		}
		if hit {
			hits++
		} else {
			r.FalseEvents = append(r.FalseEvents, e)
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
}
