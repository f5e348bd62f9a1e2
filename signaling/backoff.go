package signaling

import (
	"github.com/edgecam/edgecam/internal/backoff"
	"time"
)

// Backoff is the jittered exponential back-off between reconnection attempts.
type Backoff struct {
	// Min is the first delay (default 500 ms), Max the largest (default 30 s).
	Min, Max time.Duration
	// StableAfter is how long a connection must have lasted for its loss to count as a
	// first failure again (default 10 s); a connection lost sooner keeps the delay growing,
	// so that a channel on which two masters keep replacing each other does not spin.
	StableAfter time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = 500 * time.Millisecond
	}
	if b.Max < b.Min {
		b.Max = max(30*time.Second, b.Min)
	}
	if b.StableAfter <= 0 {
		b.StableAfter = 10 * time.Second
	}
	return b
}

// Delay returns the wait before attempt n (1 = first retry): between half and all of
// Min·2^(n-1), capped at Max ("equal jitter", so that a fleet does not reconnect in step).
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	return backoff.Delay(b.Min, b.Max, n)
}
