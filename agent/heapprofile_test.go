package agent

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// edgecam runs with the heap profile's sampling off (it costs memory, cmd/edgecam); the agent
// turns it on when metrics.pprof serves the profile, so that the profile is not empty.
func TestPProfTurnsHeapProfileSamplingOn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pprof bool
		rate  int // runtime.MemProfileRate once the agent serves metrics
	}{
		{name: "pprof on", pprof: true, rate: DefaultMemProfileRate},
		{name: "pprof off", pprof: false, rate: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := runtime.MemProfileRate
			runtime.MemProfileRate = 0 // as edgecam starts
			t.Cleanup(func() { runtime.MemProfileRate = saved })

			cfg := testConfig(t)
			cfg.Metrics.Listen, cfg.Metrics.PProf = "127.0.0.1:0", tc.pprof
			cfg.Motion.Enabled = false
			a, err := New(Options{Config: cfg})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() { cancel(); require.NoError(t, <-done) }()
			require.Eventually(t, func() bool { return a.MetricsAddr() != "" }, 15*time.Second, 20*time.Millisecond)

			code, body := get(t, "http://"+a.MetricsAddr()+"/debug/pprof/heap?debug=1")
			if !tc.pprof {
				require.Equal(t, http.StatusNotFound, code)
				return
			}
			require.Equal(t, http.StatusOK, code)
			// The profile's header names the sampling rate (twice MemProfileRate, as pprof
			// writes it): heap/0 would be a profile that never samples.
			require.Contains(t, body, "@ heap/"+strconv.Itoa(2*tc.rate)+"\n")
		})
	}
}
