// Package media moves encoded video through edgecam: the Hub that fans access units out to
// the recorder and viewers, the recorder, and the builder of GStreamer pipeline descriptions.
// It holds no cgo: GStreamer itself lives behind media/gst.
package media

import (
	"context"
	"errors"
	"sync"
	"time"
)

// AccessUnit is one encoded H.264 picture in Annex-B form, with SPS/PPS in-band on keyframes.
type AccessUnit struct {
	// Data is shared by every subscriber: never modify it.
	Data []byte
	// PTS and DTS lie on the stream's continuous timeline (it does not restart with the pipeline).
	PTS, DTS time.Duration
	Duration time.Duration
	// Keyframe is true when the unit holds an IDR slice (NAL type 5).
	Keyframe bool
	// Wall is when the hub received the unit; pre-roll is measured on it.
	Wall time.Time
	// Seq numbers units in publish order; the hub assigns it.
	Seq uint64
}

// ErrClosed is returned by Subscription.Next once the subscription or its hub is closed.
var ErrClosed = errors.New("media: subscription closed")

// HubOptions configure a Hub.
type HubOptions struct {
	// PreRoll is how far back the ring reaches: it always holds a keyframe at or before
	// now − PreRoll once that much video has passed. Zero keeps only the current GOP.
	PreRoll time.Duration
	// MaxBytes bounds the ring; the oldest GOPs go first, the current GOP last.
	MaxBytes int
	// QueueFrames is the default queue length of a subscription.
	QueueFrames int
	// Now returns the wall clock; nil means time.Now.
	Now func() time.Time
}

// Hub fans access units out to subscribers. Publish never blocks: each subscriber has its own
// bounded queue, and one that falls behind loses its own frames up to the next keyframe.
// The hub keeps the current GOP, so a new subscriber starts on a keyframe at once, and a
// GOP-aligned pre-roll ring, so a recording can start seconds in the past.
type Hub struct {
	opts HubOptions

	mu       sync.Mutex
	gops     [][]AccessUnit // oldest first; each starts with a keyframe; the last is current
	bytes    int
	seq      uint64
	waitKey  bool // after a discontinuity, drop units until the next keyframe
	subs     map[*Subscription]struct{}
	closed   bool
	received uint64
	skipped  uint64
}

// NewHub returns an empty hub.
func NewHub(opts HubOptions) *Hub {
	if opts.QueueFrames <= 0 {
		opts.QueueFrames = 120
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Hub{opts: opts, subs: map[*Subscription]struct{}{}}
}

// Publish hands an access unit to every subscriber and to the ring. The hub takes ownership
// of au.Data. It sets au.Seq, and au.Wall when it is zero.
func (h *Hub) Publish(au AccessUnit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.received++
	if h.waitKey && !au.Keyframe {
		h.skipped++
		return
	}
	h.waitKey = false
	h.seq++
	au.Seq = h.seq
	if au.Wall.IsZero() {
		au.Wall = h.opts.Now()
	}
	h.store(au)
	for s := range h.subs {
		s.offer(au)
	}
}

// store appends au to the ring and trims it back to the pre-roll and byte bounds.
func (h *Hub) store(au AccessUnit) {
	switch {
	case au.Keyframe:
		h.gops = append(h.gops, make([]AccessUnit, 0, 2*len(h.current())+1))
	case len(h.gops) == 0:
		return // the ring starts at a keyframe
	}
	last := len(h.gops) - 1
	h.gops[last] = append(h.gops[last], au)
	h.bytes += len(au.Data)

	horizon := au.Wall.Add(-h.opts.PreRoll)
	for len(h.gops) > 1 && (!h.gops[1][0].Wall.After(horizon) || h.bytes > h.opts.MaxBytes) {
		h.dropOldestGOP()
	}
	if h.bytes > h.opts.MaxBytes {
		// A keyframe-less source would grow the current GOP without end: give it up; new
		// subscribers then wait for the next keyframe.
		h.dropOldestGOP()
	}
}

func (h *Hub) dropOldestGOP() {
	for _, u := range h.gops[0] {
		h.bytes -= len(u.Data)
	}
	h.gops[0] = nil
	h.gops = h.gops[1:]
}

func (h *Hub) current() []AccessUnit {
	if len(h.gops) == 0 {
		return nil
	}
	return h.gops[len(h.gops)-1]
}

// Discontinuity tells the hub that the stream restarted (a new pipeline, a new camera
// session): units are dropped until the next keyframe, because inter frames of the new
// stream cannot be decoded with the references of the old one.
func (h *Hub) Discontinuity() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waitKey = true
}

// SubscribeOptions choose where a subscription starts and how much it may queue.
type SubscribeOptions struct {
	// Name identifies the subscriber in stats and logs.
	Name string
	// QueueFrames bounds the queue; zero means the hub's default. Frames replayed from the
	// ring at the start do not count against it.
	QueueFrames int
	// Since, when set, starts at the newest keyframe at or before Since that the ring still
	// holds (or its oldest keyframe), replaying everything after it: the motion pre-roll.
	Since time.Time
	// NextKeyframe starts at the next keyframe published instead of the current GOP.
	NextKeyframe bool
}

// Subscribe returns a subscription. By default it starts with the current GOP: its first
// unit is the GOP's keyframe, followed by the rest of the GOP, then live units.
func (h *Hub) Subscribe(opts SubscribeOptions) *Subscription {
	if opts.QueueFrames <= 0 {
		opts.QueueFrames = h.opts.QueueFrames
	}
	s := &Subscription{hub: h, name: opts.Name, notify: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.closed = true
		return s
	}
	var backlog []AccessUnit
	switch {
	case opts.NextKeyframe:
	case !opts.Since.IsZero():
		backlog = h.since(opts.Since)
	default:
		backlog = h.current()
	}
	s.queue = opts.QueueFrames
	s.limit = opts.QueueFrames + len(backlog)
	s.q = append(make([]AccessUnit, 0, min(s.limit, 2*opts.QueueFrames+len(backlog))), backlog...)
	s.waitKey = len(backlog) == 0
	if len(backlog) > 0 {
		s.start = backlog[0].Wall
		s.signal()
	}
	h.subs[s] = struct{}{}
	return s
}

// since returns the ring from the newest keyframe at or before t (or the oldest keyframe).
func (h *Hub) since(t time.Time) []AccessUnit {
	if len(h.gops) == 0 {
		return nil
	}
	first := 0
	for i, g := range h.gops {
		if g[0].Wall.After(t) {
			break
		}
		first = i
	}
	n := 0
	for _, g := range h.gops[first:] {
		n += len(g)
	}
	out := make([]AccessUnit, 0, n)
	for _, g := range h.gops[first:] {
		out = append(out, g...)
	}
	return out
}

// Close ends every subscription; Publish becomes a no-op.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.close()
	}
	clear(h.subs)
	h.gops = nil
	h.bytes = 0
}

// Subscribers returns how many subscriptions are attached.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// HubStats is a snapshot of the hub's counters.
type HubStats struct {
	Received    uint64        // units published
	Skipped     uint64        // units dropped after a discontinuity, before a keyframe
	RingFrames  int           // units held for pre-roll and new subscribers
	RingBytes   int           // bytes held
	RingSpan    time.Duration // wall time from the ring's oldest keyframe to its newest unit
	Subscribers []SubscriptionStats
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := HubStats{Received: h.received, Skipped: h.skipped, RingBytes: h.bytes}
	for _, g := range h.gops {
		st.RingFrames += len(g)
	}
	if len(h.gops) > 0 {
		cur := h.current()
		st.RingSpan = cur[len(cur)-1].Wall.Sub(h.gops[0][0].Wall)
	}
	for s := range h.subs {
		st.Subscribers = append(st.Subscribers, s.Stats())
	}
	return st
}

// Subscription is one consumer's view of the hub.
type Subscription struct {
	hub    *Hub
	name   string
	notify chan struct{}
	start  time.Time

	mu        sync.Mutex
	q         []AccessUnit // queued units are q[head:]; the array is reused once drained
	head      int
	queue     int // the subscriber's queue length (SubscribeOptions.QueueFrames)
	limit     int // queue, plus the backlog replayed at the start
	waitKey   bool
	closed    bool
	delivered uint64
	dropped   uint64
}

// offer queues au without blocking. Called with the hub locked.
func (s *Subscription) offer(au AccessUnit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.waitKey && !au.Keyframe {
		s.dropped++
		return
	}
	s.waitKey = false
	if len(s.q)-s.head >= s.limit {
		// Too far behind: what is queued is stale. Skip to the next keyframe.
		s.dropped += uint64(len(s.q) - s.head)
		clear(s.q)
		s.q, s.head = s.q[:0], 0
		s.limit = s.queue
		if !au.Keyframe {
			s.dropped++
			s.waitKey = true
			return
		}
	}
	if len(s.q) == cap(s.q) && s.head > 0 { // full array, consumed front: slide down
		n := copy(s.q, s.q[s.head:])
		clear(s.q[n:])
		s.q, s.head = s.q[:n], 0
	}
	s.q = append(s.q, au)
	s.signal()
}

func (s *Subscription) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next returns the next access unit, waiting until one arrives, ctx ends (ctx.Err()) or
// the subscription is closed (ErrClosed). Units already queued are returned first.
func (s *Subscription) Next(ctx context.Context) (AccessUnit, error) {
	for {
		s.mu.Lock()
		if s.head < len(s.q) {
			au := s.q[s.head]
			s.q[s.head] = AccessUnit{}
			s.head++
			if s.head == len(s.q) { // drained: reuse the array, unless a pre-roll made it large
				s.q, s.head = s.q[:0], 0
				if cap(s.q) > 2*s.queue {
					s.q = nil
				}
			}
			s.delivered++
			s.mu.Unlock()
			return au, nil
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return AccessUnit{}, ErrClosed
		}
		select {
		case <-ctx.Done():
			return AccessUnit{}, ctx.Err()
		case <-s.notify:
		}
	}
}

// Start is the wall time of the first replayed unit, or zero when the subscription began live.
func (s *Subscription) Start() time.Time { return s.start }

// Close detaches the subscription from the hub; Next then returns ErrClosed.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
	s.close()
}

func (s *Subscription) close() {
	s.mu.Lock()
	s.closed = true
	s.q, s.head = nil, 0
	s.mu.Unlock()
	s.signal()
}

// SubscriptionStats counts what a subscriber received and lost.
type SubscriptionStats struct {
	Name      string
	Queued    int
	Delivered uint64
	Dropped   uint64
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SubscriptionStats{Name: s.name, Queued: len(s.q) - s.head, Delivered: s.delivered, Dropped: s.dropped}
}
