// Package backoff computes jittered exponential back-off delays, so that a fleet of devices
// that lost a service does not come back to it all at once.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Delay returns the wait before retry n (1 = the first retry): between half and all of
// first·2^(n-1), capped at ceiling ("equal jitter"). It is 0 for n ≤ 0.
func Delay(first, ceiling time.Duration, n int) time.Duration {
	if n <= 0 || first <= 0 {
		return 0
	}
	d := first
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, max(ceiling, first))
	return d/2 + rand.N(d/2+1)
}
