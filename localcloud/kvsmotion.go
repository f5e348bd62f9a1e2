package localcloud

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Motion events the agent publishes (edgecam/<thing>/events/motion), kept in memory so that
// the recordings page can mark them on a stream's timeline (the stream is named like its
// thing by default): GET /kvs/streams/<name>/motion.

const (
	motionEventsFilter = "edgecam/+/events/motion"
	motionEventsSubID  = 50 // the broker's inline subscription identifier
	maxMotionEvents    = 1000
)

// motionEvent is what the recordings page needs of an agent's motion event.
type motionEvent struct {
	Event       string     `json:"event"` // start or end
	Start       time.Time  `json:"start"`
	End         *time.Time `json:"end,omitempty"`
	PreRollFrom time.Time  `json:"preRollFrom"`
	PeakScore   float64    `json:"peakScore"`
	Timestamp   time.Time  `json:"timestamp"`
}

type motionLog struct {
	mu      sync.Mutex
	byThing map[string][]motionEvent
}

// motionEvent records a published motion event (an MQTT observer).
func (s *streamService) motionEvent(topic string, payload []byte) {
	parts := strings.Split(topic, "/")
	if len(parts) != 4 {
		return
	}
	var ev motionEvent
	if err := json.Unmarshal(payload, &ev); err != nil || ev.Start.IsZero() {
		return
	}
	m := &s.motion
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byThing == nil {
		m.byThing = map[string][]motionEvent{}
	}
	list := append(m.byThing[parts[1]], ev)
	if len(list) > maxMotionEvents {
		list = list[len(list)-maxMotionEvents:]
	}
	m.byThing[parts[1]] = list
}

// motionSpan is a motion interval: from its pre-roll (or start) to its end (absent while
// the motion goes on).
type motionSpan struct {
	PreRollFrom time.Time  `json:"preRollFrom"`
	Start       time.Time  `json:"start"`
	End         *time.Time `json:"end,omitempty"`
	PeakScore   float64    `json:"peakScore"`
}

// motionSpans merges a thing's start and end events into intervals, oldest first.
func (s *streamService) motionSpans(thing string) []motionSpan {
	m := &s.motion
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []motionSpan{}
	open := map[time.Time]int{}
	for _, ev := range m.byThing[thing] {
		i, ok := open[ev.Start]
		if !ok {
			out = append(out, motionSpan{PreRollFrom: ev.PreRollFrom, Start: ev.Start})
			i = len(out) - 1
			open[ev.Start] = i
		}
		if ev.End != nil {
			out[i].End = ev.End
		}
		out[i].PeakScore = max(out[i].PeakScore, ev.PeakScore)
		if out[i].PreRollFrom.IsZero() {
			out[i].PreRollFrom = ev.PreRollFrom
		}
	}
	return out
}

func (s *streamService) serveMotion(w http.ResponseWriter, name string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"thing": name, "motion": s.motionSpans(name)})
}
