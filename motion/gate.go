package motion

import (
	"fmt"
	"time"
)

// GateOptions configure a Gate. Zero durations mean none; zero StartFrames means 1.
type GateOptions struct {
	// StartFrames is how many consecutive motion frames start an event.
	StartFrames int
	// PostRoll is how long an event lasts after its last motion frame.
	PostRoll time.Duration
	// PreRoll is how far before an event's start a recording should begin; the Gate only
	// carries it into Event.PreRollFrom.
	PreRoll time.Duration
	// EventGap merges events: motion that would start a new event less than EventGap after
	// the end of the previous one continues it instead.
	EventGap time.Duration
}

// DefaultGateOptions returns options that suit a detector running at a few frames per
// second: two frames to start, five seconds of post-roll, three of pre-roll, and events
// less than ten seconds apart merged.
func DefaultGateOptions() GateOptions {
	return GateOptions{StartFrames: 2, PostRoll: 5 * time.Second, PreRoll: 3 * time.Second, EventGap: 10 * time.Second}
}

// EventKind tells an event's start from its end.
type EventKind int

// Event kinds.
const (
	EventStart EventKind = iota + 1
	EventEnd
)

// String returns "start" or "end".
func (k EventKind) String() string {
	switch k {
	case EventStart:
		return "start"
	case EventEnd:
		return "end"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is the start or the end of a motion event.
type Event struct {
	Kind EventKind
	// Start is the time of the first of the consecutive motion frames that started the event.
	Start time.Time
	// End is the last motion frame's time plus the post-roll (earlier when Flush cut it
	// short); it is zero in a start event.
	End time.Time
	// PreRollFrom is Start minus the pre-roll: where a recording of the event should begin.
	PreRollFrom time.Time
	// PeakScore and PeakArea are the highest Result.Score and Result.Area among the event's
	// motion frames so far.
	PeakScore, PeakArea float64
	// Regions are the moving regions of the frame with the peak score (a copy).
	Regions []Region
}

// Gate turns per-frame results into motion events: an event starts after StartFrames
// consecutive motion frames, ends PostRoll after its last motion frame, and absorbs new
// motion that comes less than EventGap after that end. Time comes only from the frame
// timestamps given to Update, never from the clock; warm-up and illumination frames count
// as frames without motion.
//
// Merging delays the end event: Update reports an event's end once EventGap has passed
// after it with no new event starting, so a recording that follows Active runs on through
// the gap (PostRoll + EventGap after the last motion) and merged events make one
// recording. Event.End still tells when the activity ended.
//
// Time runs out only on frames without motion: the post-roll ends, and then the gap, on
// the first frame without motion at or after them, and until then motion extends the
// event (inside the post-roll any motion frame does; after it, StartFrames consecutive
// ones). So an event starts only on a motion frame and ends only on a frame without motion
// or at Flush, a frame yields at most one event, and the gap is measured to within one
// frame interval. A Gate is not safe for concurrent use.
type Gate struct {
	o GateOptions

	active bool
	// ending is set once a frame without motion saw the post-roll run out: from then on,
	// motion must qualify as an event start to extend the event.
	ending     bool
	start      time.Time
	lastMotion time.Time
	peakScore  float64
	peakArea   float64
	regions    []Region // at the peak score

	// The current run of consecutive motion frames that has not started an event yet.
	run                       int
	runStart                  time.Time
	runPeakScore, runPeakArea float64
	runRegions                []Region

	last time.Time // the latest frame time seen, so that time never goes back
}

// NewGate returns a Gate, or an error when an option is negative.
func NewGate(o GateOptions) (*Gate, error) {
	switch {
	case o.StartFrames < 0:
		return nil, fmt.Errorf("motion: start frames %d is negative: use 1 or more (0 means 1)", o.StartFrames)
	case o.PostRoll < 0:
		return nil, fmt.Errorf("motion: post-roll %v is negative: use 0 or more", o.PostRoll)
	case o.PreRoll < 0:
		return nil, fmt.Errorf("motion: pre-roll %v is negative: use 0 or more", o.PreRoll)
	case o.EventGap < 0:
		return nil, fmt.Errorf("motion: event gap %v is negative: use 0 or more", o.EventGap)
	}
	o.StartFrames = max(o.StartFrames, 1)
	return &Gate{o: o}, nil
}

// Active reports whether an event is open: it has started and its end has not been
// reported yet. A recorder that follows the gate records while Active is true.
func (g *Gate) Active() bool {
	return g.active
}

// Update feeds the result of the frame taken at t and returns the event it causes, if any.
// Frames must come in time order; a time earlier than the previous frame's counts as the
// previous frame's. When frames stop, call Update with an empty Result now and then so that
// an open event can end, or Flush.
func (g *Gate) Update(t time.Time, r Result) (Event, bool) {
	if t.Before(g.last) {
		t = g.last
	}
	g.last = t

	if !r.Motion || r.Illumination || r.Warmup {
		g.run = 0
		if !g.active {
			return Event{}, false
		}
		end := g.lastMotion.Add(g.o.PostRoll)
		if !t.Before(end) {
			g.ending = true
		}
		if g.ending && !t.Before(end.Add(g.o.EventGap)) {
			return g.finish(end), true
		}
		return Event{}, false
	}

	if g.active && !g.ending {
		g.extend(t, r.Score, r.Area, r.Regions)
		return Event{}, false
	}
	if g.run == 0 {
		g.runStart = t
		g.runPeakScore, g.runPeakArea = 0, 0
	}
	g.run++
	if r.Score > g.runPeakScore || g.run == 1 {
		g.runRegions = append(g.runRegions[:0], r.Regions...)
	}
	g.runPeakScore = max(g.runPeakScore, r.Score)
	g.runPeakArea = max(g.runPeakArea, r.Area)
	if g.run < g.o.StartFrames {
		return Event{}, false
	}
	g.run = 0
	if g.active {
		// Motion came back within the gap: the same event goes on.
		g.ending = false
		g.extend(t, g.runPeakScore, g.runPeakArea, g.runRegions)
		return Event{}, false
	}
	g.active, g.ending = true, false
	g.start = g.runStart
	g.lastMotion = t
	g.peakScore, g.peakArea = g.runPeakScore, g.runPeakArea
	g.regions = append(g.regions[:0], g.runRegions...)
	return g.event(EventStart, time.Time{}), true
}

// Flush ends an open event at t, at shutdown or when frames stop for good, and returns its
// end event. The end is t when the post-roll had not run out yet.
func (g *Gate) Flush(t time.Time) (Event, bool) {
	g.run = 0
	if !g.active {
		return Event{}, false
	}
	end := g.lastMotion.Add(g.o.PostRoll)
	if t.Before(end) {
		end = t
	}
	if end.Before(g.lastMotion) {
		end = g.lastMotion
	}
	return g.finish(end), true
}

// extend counts a motion frame at t, or a merged run ending at t, into the open event.
func (g *Gate) extend(t time.Time, score, area float64, regions []Region) {
	g.lastMotion = t
	if score > g.peakScore {
		g.regions = append(g.regions[:0], regions...)
	}
	g.peakScore = max(g.peakScore, score)
	g.peakArea = max(g.peakArea, area)
}

// finish closes the open event with the given end and returns its end event.
func (g *Gate) finish(end time.Time) Event {
	e := g.event(EventEnd, end)
	g.active, g.ending = false, false
	return e
}

// event describes the open event.
func (g *Gate) event(kind EventKind, end time.Time) Event {
	return Event{
		Kind:        kind,
		Start:       g.start,
		End:         end,
		PreRollFrom: g.start.Add(-g.o.PreRoll),
		PeakScore:   g.peakScore,
		PeakArea:    g.peakArea,
		Regions:     append([]Region(nil), g.regions...),
	}
}
