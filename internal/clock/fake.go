package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a clock for tests. Its wall clock can be stepped (Step) without moving time, as
// NTP does, and time can be made to pass (Advance), which moves the wall clock and fires
// the timers that are due. Timers run on elapsed time only.
type Fake struct {
	mu      sync.Mutex
	wall    time.Time
	elapsed time.Duration
	timers  []*fakeTimer
	armed   chan struct{} // closed and replaced whenever a timer is created
}

// NewFake returns a fake clock whose wall clock reads now.
func NewFake(now time.Time) *Fake { return &Fake{wall: now, armed: make(chan struct{})} }

// Now returns the fake wall clock.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall
}

// Elapsed returns how much time has passed (the sum of Advance calls).
func (f *Fake) Elapsed() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.elapsed
}

// Step moves the wall clock by d without time passing: no timer fires.
func (f *Fake) Step(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = f.wall.Add(d)
}

// Advance lets d pass: the wall clock moves by d and every timer due by then fires, in
// order of their deadlines.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.elapsed += d
	f.wall = f.wall.Add(d)
	var due, keep []*fakeTimer
	for _, t := range f.timers {
		if t.at <= f.elapsed {
			due = append(due, t)
		} else {
			keep = append(keep, t)
		}
	}
	f.timers = keep
	now := f.wall
	f.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at < due[j].at })
	for _, t := range due {
		t.c <- now
	}
}

// Timers returns how many timers are waiting.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NextTimer returns how long until the earliest waiting timer fires, and false when none
// waits.
func (f *Fake) NextTimer() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.timers) == 0 {
		return 0, false
	}
	next := f.timers[0].at
	for _, t := range f.timers[1:] {
		next = min(next, t.at)
	}
	return next - f.elapsed, true
}

// Armed returns a channel that is closed when the next timer is created, so that a test
// waits on an event, not a sleep.
func (f *Fake) Armed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.armed
}

// NewTimer implements Clock.
func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, at: f.elapsed + max(d, 0), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.wall // due at once, as a standard timer would be
	} else {
		f.timers = append(f.timers, t)
	}
	close(f.armed)
	f.armed = make(chan struct{})
	return t
}

type fakeTimer struct {
	f  *Fake
	at time.Duration
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for i, x := range t.f.timers {
		if x == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			return true
		}
	}
	return false
}
