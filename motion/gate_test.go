package motion

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// at is the time of frame i at one frame per second.
func at(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }

// frameResult turns a pattern letter into the result of frame i: M motion, . none,
// I an illumination change, W warm-up (both flagged as motion too, which the gate must
// ignore). A motion frame's score and area grow with i, so peaks name their frame.
func frameResult(c byte, i int) Result {
	moving := Result{Motion: true, Score: 0.5 + float64(i)/1000, Area: float64(i) / 1000}
	switch c {
	case 'M':
		return moving
	case 'I':
		moving.Illumination = true
		return moving
	case 'W':
		moving.Warmup = true
		return moving
	}
	return Result{Score: 0.1, Area: 0.0001}
}

// gotEvent is an event and the frame that produced it.
type gotEvent struct {
	frame int
	Event
}

// feed runs pattern through g, one frame per second from t0, and returns the events.
func feed(t *testing.T, g *Gate, pattern string) []gotEvent {
	t.Helper()
	var out []gotEvent
	for i := range len(pattern) {
		if e, ok := g.Update(at(i), frameResult(pattern[i], i)); ok {
			out = append(out, gotEvent{i, e})
		}
	}
	return out
}

// start and end build expected events: frame is where it is reported, first the event's
// first motion frame, last its last counted one (its end is last + post-roll, and its peak
// score and area are frame last's, as they grow with the frame number).
func start(frame, first, peak int, o GateOptions) gotEvent {
	return gotEvent{frame, Event{
		Kind: EventStart, Start: at(first), PreRollFrom: at(first).Add(-o.PreRoll),
		PeakScore: 0.5 + float64(peak)/1000, PeakArea: float64(peak) / 1000,
	}}
}

func end(frame, first, last int, o GateOptions) gotEvent {
	e := start(frame, first, last, o)
	e.Kind = EventEnd
	e.End = at(last).Add(o.PostRoll)
	return e
}

func TestGate(t *testing.T) {
	three := GateOptions{StartFrames: 3, PostRoll: 2 * time.Second, PreRoll: 5 * time.Second}
	two := GateOptions{StartFrames: 2, PostRoll: 3 * time.Second, PreRoll: 4 * time.Second}
	merge := GateOptions{StartFrames: 2, PostRoll: 2 * time.Second, PreRoll: time.Second, EventGap: 5 * time.Second}
	one := GateOptions{}
	tests := []struct {
		name    string
		o       GateOptions
		pattern string
		want    []gotEvent
	}{
		{
			name: "starts after N frames at the first of them", o: three,
			pattern: "..MMM.......",
			want:    []gotEvent{start(4, 2, 4, three), end(6, 2, 4, three)},
		},
		{
			name: "broken runs never start", o: three,
			pattern: "MM.MM.M.MM.MM..",
		},
		{
			name: "any motion frame inside the post-roll extends the event", o: two,
			pattern: "MM..M..M......",
			want:    []gotEvent{start(1, 0, 1, two), end(10, 0, 7, two)},
		},
		{
			name: "zero start frames means one, zero post-roll ends on the next quiet frame", o: one,
			pattern: ".M.MM..",
			want: []gotEvent{
				start(1, 1, 1, one), end(2, 1, 1, one),
				start(3, 3, 3, one), end(5, 3, 4, one),
			},
		},
		{
			name: "an event less than the gap after the end merges", o: merge,
			// Post-roll runs out at 3, the gap at 8; motion at 6 and 7 qualifies: one event.
			pattern: "MM....MM........",
			want:    []gotEvent{start(1, 0, 1, merge), end(14, 0, 7, merge)},
		},
		{
			name: "an event after the gap is a new one", o: merge,
			pattern: "MM.......MM.........",
			want: []gotEvent{
				start(1, 0, 1, merge), end(8, 0, 1, merge),
				start(10, 9, 10, merge), end(17, 9, 10, merge),
			},
		},
		{
			name: "a lone motion frame in the gap neither merges nor counts in the peaks", o: merge,
			pattern: "MM...M.....",
			want:    []gotEvent{start(1, 0, 1, merge), end(8, 0, 1, merge)},
		},
		{
			name: "illumination and warm-up frames are no motion", o: two,
			pattern: "WMWMIMI.MIM",
		},
		{
			name: "illumination ends an event like a quiet frame", o: two,
			pattern: "MMIIIII",
			want:    []gotEvent{start(1, 0, 1, two), end(4, 0, 1, two)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGate(tt.o)
			require.NoError(t, err)
			got := feed(t, g, tt.pattern)
			require.Equal(t, tt.want, got)
			open := len(got) > 0 && got[len(got)-1].Kind == EventStart
			require.Equal(t, open, g.Active())
		})
	}
}

func TestGateActiveFollowsEvents(t *testing.T) {
	g, err := NewGate(GateOptions{StartFrames: 2, PostRoll: 2 * time.Second, EventGap: 3 * time.Second})
	require.NoError(t, err)
	pattern := "..MM.........M"
	// Active from the start event through post-roll and gap to the end event.
	want := "...11111......"
	for i := range len(pattern) {
		g.Update(at(i), frameResult(pattern[i], i))
		require.Equal(t, want[i] == '1', g.Active(), "frame %d", i)
	}
}

func TestGateFlush(t *testing.T) {
	o := GateOptions{StartFrames: 2, PostRoll: 4 * time.Second, PreRoll: time.Second, EventGap: 10 * time.Second}
	tests := []struct {
		name    string
		pattern string
		flushAt int
		want    *gotEvent
	}{
		{"idle", "M.M", 3, nil},
		{"a run that has not started an event", ".M", 2, nil},
		{"inside the post-roll ends at the flush", "MMM.", 4, &gotEvent{-1, Event{
			Kind: EventEnd, Start: at(0), End: at(4), PreRollFrom: at(-1), PeakScore: 0.502, PeakArea: 0.002,
		}}},
		{"inside the gap ends with the post-roll", "MM........", 10, &gotEvent{-1, Event{
			Kind: EventEnd, Start: at(0), End: at(5), PreRollFrom: at(-1), PeakScore: 0.501, PeakArea: 0.001,
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGate(o)
			require.NoError(t, err)
			feed(t, g, tt.pattern)
			e, ok := g.Flush(at(tt.flushAt))
			require.Equal(t, tt.want != nil, ok)
			if tt.want != nil {
				require.Equal(t, tt.want.Event, e)
			}
			require.False(t, g.Active())
			// A run cut by the flush does not carry over: a new event needs its own frames.
			_, ok = g.Update(at(tt.flushAt+1), frameResult('M', tt.flushAt+1))
			require.False(t, ok)
			e, ok = g.Update(at(tt.flushAt+2), frameResult('M', tt.flushAt+2))
			require.True(t, ok)
			require.Equal(t, at(tt.flushAt+1), e.Start)
			_, ok = g.Flush(at(tt.flushAt + 2))
			require.True(t, ok)
			_, ok = g.Flush(at(tt.flushAt + 3))
			require.False(t, ok, "a second flush has nothing to end")
		})
	}
}

func TestGateTimeEdgeCases(t *testing.T) {
	o := GateOptions{StartFrames: 2, PostRoll: 2 * time.Second}
	moving, quiet := Result{Motion: true, Score: 0.6, Area: 0.01}, Result{}
	tests := []struct {
		name  string
		times []time.Duration
		rs    []Result
		kinds []EventKind // the event of each frame, 0 for none
	}{
		{
			name:  "a frame older than the last counts as the last",
			times: []time.Duration{10 * time.Second, 11 * time.Second, 5 * time.Second, 12 * time.Second, 13 * time.Second},
			rs:    []Result{moving, moving, moving, quiet, quiet},
			// The frame at 5 s counts as 11 s, so the post-roll runs from 11 s to 13 s.
			kinds: []EventKind{0, EventStart, 0, 0, EventEnd},
		},
		{
			name:  "motion after a pause in the frames continues the event",
			times: []time.Duration{0, time.Second, time.Minute, time.Minute + time.Second, time.Minute + 3*time.Second},
			rs:    []Result{moving, moving, moving, quiet, quiet},
			kinds: []EventKind{0, EventStart, 0, 0, EventEnd},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGate(o)
			require.NoError(t, err)
			for i, d := range tt.times {
				e, ok := g.Update(t0.Add(d), tt.rs[i])
				require.Equal(t, tt.kinds[i] != 0, ok, "frame %d", i)
				require.Equal(t, tt.kinds[i], e.Kind, "frame %d", i)
			}
		})
	}
}

func TestNewGateErrors(t *testing.T) {
	tests := []struct {
		o    GateOptions
		want string
	}{
		{GateOptions{StartFrames: -1}, "motion: start frames -1 is negative: use 1 or more (0 means 1)"},
		{GateOptions{PostRoll: -time.Second}, "motion: post-roll -1s is negative: use 0 or more"},
		{GateOptions{PreRoll: -time.Second}, "motion: pre-roll -1s is negative: use 0 or more"},
		{GateOptions{EventGap: -time.Second}, "motion: event gap -1s is negative: use 0 or more"},
	}
	for _, tt := range tests {
		g, err := NewGate(tt.o)
		require.Nil(t, g)
		require.EqualError(t, err, tt.want)
	}
	g, err := NewGate(DefaultGateOptions())
	require.NoError(t, err)
	require.NotNil(t, g)
}

func TestEventKindString(t *testing.T) {
	require.Equal(t, "start", EventStart.String())
	require.Equal(t, "end", EventEnd.String())
	require.Equal(t, "EventKind(0)", EventKind(0).String())
	require.Equal(t, "normalized", Normalized.String())
}

// TestGateCarriesPeakRegions: an event carries a copy of the moving regions of its
// strongest frame.
func TestGateCarriesPeakRegions(t *testing.T) {
	g, err := NewGate(GateOptions{StartFrames: 2, PostRoll: time.Second})
	require.NoError(t, err)
	small := []Region{{Rect: Rect{X: 0.1, Y: 0.1, W: 0.05, H: 0.05}, Area: 0.001}}
	big := []Region{{Rect: Rect{X: 0.5, Y: 0.2, W: 0.2, H: 0.3}, Area: 0.02}}
	_, ok := g.Update(at(0), Result{Motion: true, Score: 0.6, Regions: small})
	require.False(t, ok)
	ev, ok := g.Update(at(1), Result{Motion: true, Score: 0.9, Regions: big})
	require.True(t, ok)
	require.Equal(t, big, ev.Regions)
	big[0].X = 0.9 // the detector reuses its slice
	_, ok = g.Update(at(2), Result{Motion: true, Score: 0.7, Regions: small})
	require.False(t, ok)
	ev, ok = g.Update(at(10), Result{})
	require.True(t, ok)
	require.Equal(t, EventEnd, ev.Kind)
	require.Len(t, ev.Regions, 1)
	require.Equal(t, 0.5, ev.Regions[0].X, "a copy of the peak frame's regions")
}
