// Package clock gives schedules a wall clock they can re-check and a fake one for tests, and
// judges whether the system clock is plausible: a Raspberry Pi has no real-time clock and
// may run hours or decades off until NTP steps it.
package clock

import (
	"context"
	"runtime/debug"
	"sync"
	"time"
)

// Clock is the wall clock plus timers that run on elapsed (monotonic) time, as the standard
// library's are: a step of the wall clock moves Now but neither shortens nor lengthens a
// timer. A schedule tied to the wall clock must therefore wake now and then and look again.
type Clock interface {
	Now() time.Time
	// NewTimer fires after d of elapsed time.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// Real is the system clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Sleep waits d of elapsed time on c, or until ctx ends; it reports whether the wait ran
// its course.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	if c == nil {
		c = Real
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// MaxNap is how long a wall-clock schedule sleeps at most before it reads the clock again,
// so that a clock step delays it by no more than this.
const MaxNap = 30 * time.Second

// Until waits until the wall clock of c reads at least t, waking at least every MaxNap to
// read it again (a step of the clock, forward or back, is noticed within MaxNap). It reports
// false when ctx ended first. onStep, when set, is told of every step of more than 2 s seen
// between two readings (the difference between wall and elapsed time).
func Until(ctx context.Context, c Clock, t time.Time, onStep func(step time.Duration)) bool {
	if c == nil {
		c = Real
	}
	for {
		before := c.Now()
		left := t.Sub(before)
		if left <= 0 {
			return true
		}
		nap := min(left, MaxNap)
		if !Sleep(ctx, c, nap) {
			return false
		}
		if step := c.Now().Sub(before) - nap; onStep != nil && (step > 2*time.Second || step < -2*time.Second) {
			onStep(step)
		}
	}
}

// floorDefault is the earliest date a running edgecam can plausibly see: no build of it
// is older. The build's commit time raises it when the binary carries one.
var floorDefault = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

var floorOnce = sync.OnceValue(func() time.Time {
	f := floorDefault
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil && t.After(f) {
					f = t
				}
			}
		}
	}
	return f
})

// Floor is the earliest plausible time: the build's commit time, or 2025-01-01.
func Floor() time.Time { return floorOnce() }
