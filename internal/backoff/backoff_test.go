package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDelay(t *testing.T) {
	tests := []struct {
		name           string
		first, ceiling time.Duration
		n              int
		bound          time.Duration // the delay lies in [bound/2, bound]
	}{
		{"no retry yet", time.Second, time.Minute, 0, 0},
		{"first retry", time.Second, time.Minute, 1, time.Second},
		{"doubles", time.Second, time.Minute, 4, 8 * time.Second},
		{"capped", time.Second, time.Minute, 7, time.Minute},
		{"far past the cap", 2 * time.Second, time.Minute, 1000, time.Minute},
		{"ceiling below first", 10 * time.Second, time.Second, 3, 10 * time.Second},
		{"no first delay", 0, time.Minute, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				d := Delay(tt.first, tt.ceiling, tt.n)
				require.GreaterOrEqual(t, d, tt.bound/2)
				require.LessOrEqual(t, d, tt.bound)
				seen[d] = true
			}
			if tt.bound > 0 {
				require.Greater(t, len(seen), 1, "jittered")
			}
		})
	}
}
