package agent

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgecam/edgecam/iot"
	"go.uber.org/zap"
)

// EventQueueDir is where, under the state directory, events wait for the broker.
const EventQueueDir = "mqtt-queue"

// eventQueue holds motion events for the broker: in a persistent iot.Queue once the thing
// name (the topic) is known, in memory before. Events survive a connection outage and a
// restart of the agent, and reach the broker at least once, in order, each with the
// timestamps it had when it happened.
type eventQueue struct {
	mu    sync.Mutex
	thing string
	q     *iot.Queue
	held  []MotionEvent // events from before the device's identity was known
}

// openEventQueue opens the queue in the state directory once the thing name is known and
// queues the events held until then. A queue that cannot be opened leaves events to be
// published directly, as best effort.
func (a *Agent) openEventQueue(thing string) *iot.Queue {
	log := a.log.Named("events")
	q, err := iot.OpenQueue(iot.QueueOptions{Dir: filepath.Join(a.cfg.StateDir, EventQueueDir), Log: log})
	if err != nil {
		log.Error("motion events will not survive an outage: the event queue cannot be opened", zap.Error(err))
	}
	e := &a.events
	e.mu.Lock()
	defer e.mu.Unlock()
	e.thing, e.q = thing, q
	held := e.held
	e.held = nil
	for _, me := range held {
		a.queueLocked(me)
	}
	return q
}

// queueEvent queues a motion event for the broker.
func (a *Agent) queueEvent(me MotionEvent) {
	if a.cfg.IoT.Endpoint == "" {
		return
	}
	e := &a.events
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.thing == "" {
		if len(e.held) < maxHeldEvents {
			e.held = append(e.held, me)
		}
		return
	}
	a.queueLocked(me)
}

// maxHeldEvents bounds the events kept in memory until the device has its identity.
const maxHeldEvents = 1000

func (a *Agent) queueLocked(me MotionEvent) {
	e := &a.events
	me.ThingName = e.thing
	payload, _ := json.Marshal(me)
	topic := "edgecam/" + e.thing + "/events/motion"
	if e.q != nil {
		err := e.q.Enqueue(topic, payload, 1)
		if err == nil {
			return
		}
		a.log.Named("events").Warn("motion event not queued; publishing it directly", zap.Error(err))
	}
	if conn := a.deviceConn(); conn != nil {
		a.publishes.Add(1)
		go func() {
			defer a.publishes.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := conn.Publish(ctx, topic, payload, 1); err != nil {
				a.log.Named("events").Warn("motion event not published", zap.Error(err))
			}
		}()
	}
}

// EventsWaiting returns how many motion events wait for the broker.
func (a *Agent) EventsWaiting() int {
	a.events.mu.Lock()
	defer a.events.mu.Unlock()
	n := len(a.events.held)
	if a.events.q != nil {
		n += a.events.q.Len()
	}
	return n
}
