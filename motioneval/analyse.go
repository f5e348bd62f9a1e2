package motioneval

import (
	"time"

	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/motion"
)

// epoch anchors the gate's clock: evaluation time is media time.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func analyse(o Options, labels []Interval, units []encodedUnit, samples []gst.Sample, first time.Duration) (*Report, error) {
	cfg := o.Config
	dopts, gopts := motion.FromConfig(cfg)
	dopts.Width, dopts.Height = samples[0].Width, samples[0].Height
	det, err := motion.NewDetector(dopts)
	if err != nil {
		return nil, err
	}
	gate, err := motion.NewGate(gopts)
	if err != nil {
		return nil, err
	}
	r := &Report{Video: o.Video, Threshold: 0.5, Labels: labels, EncodedFrames: len(units)}
	at := func(s gst.Sample) float64 { return (s.PTS - first).Seconds() }
	var events []motion.Event
	var spent time.Duration
	for _, s := range samples {
		if s.Width != dopts.Width || s.Height != dopts.Height {
			continue
		}
		t0 := time.Now()
		res, err := det.Process(s.Data)
		spent += time.Since(t0)
		if err != nil {
			return nil, err
		}
		sec := at(s)
		r.Frames = append(r.Frames, Frame{At: sec, Result: res})
		if ev, ok := gate.Update(epoch.Add(time.Duration(sec*float64(time.Second))), res); ok {
			events = append(events, ev)
		}
	}
	last := units[len(units)-1].at
	r.Duration = last
	if ev, ok := gate.Flush(epoch.Add(time.Duration(last * float64(time.Second)))); ok {
		events = append(events, ev)
	}
	if n := len(r.Frames); n > 0 {
		r.DetectorMicros = float64(spent.Microseconds()) / float64(n)
		if r.Duration > 0 {
			r.AnalysisFPS = float64(n) / r.Duration
		}
	}
	secs := func(t time.Time) float64 { return t.Sub(epoch).Seconds() }
	// Pair starts and ends; the end event is emitted when the gate closes, which is when a
	// motion recording stops.
	var open *motion.Event
	closedAt := map[int]float64{}
	for i := range events {
		ev := events[i]
		switch ev.Kind {
		case motion.EventStart:
			open = &events[i]
		case motion.EventEnd:
			if open == nil {
				continue
			}
			e := Event{Start: secs(ev.Start), End: secs(ev.End), PeakScore: ev.PeakScore, PeakArea: ev.PeakArea}
			e.RecordFrom = keyframeAtOrBefore(units, secs(ev.PreRollFrom))
			e.RecordTo = closeTime(r.Frames, ev, gopts, last)
			r.Events = append(r.Events, e)
			closedAt[len(r.Events)-1] = e.RecordTo
			open = nil
		}
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

// closeTime is when the gate emitted the end event: the first analysed frame at or after
// the event's end plus the event gap (the gate waits out the gap before it ends an event).
func closeTime(frames []Frame, ev motion.Event, g motion.GateOptions, last float64) float64 {
	limit := ev.End.Add(g.EventGap).Sub(epoch).Seconds()
	for _, f := range frames {
		if f.At >= limit {
			return f.At
		}
	}
	return last
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
