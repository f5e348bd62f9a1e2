package fleetload

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFleetLoad500 is the fleet load test's acceptance run: 500 devices against localcloud at
// 50 and 100 devices/s and unpaced, each with 0 failures; it logs the figures (throughput and
// latencies are measured, not asserted). It takes about a minute: EDGECAM_LONG_TESTS=1.
func TestFleetLoad500(t *testing.T) {
	if os.Getenv("EDGECAM_LONG_TESTS") != "1" {
		t.Skip("set EDGECAM_LONG_TESTS=1 to run 500 devices against localcloud")
	}
	const n = 500
	for i, rate := range []float64{50, 100, 0} {
		t.Run(fmt.Sprintf("rate=%g", rate), func(t *testing.T) {
			prefix := fmt.Sprintf("load%d-", i)
			c, sl := startCloud(t, serials(prefix, n))
			opts := options(t, c, n, prefix)
			opts.Rate = rate
			rep, err := Run(context.Background(), opts)
			require.NoError(t, err)
			var text bytes.Buffer
			require.NoError(t, rep.WriteText(&text))
			t.Logf("%d devices at rate %g against localcloud:\n%s", n, rate, text.String())
			require.Equal(t, n, rep.OK, "failures: %+v", rep.Failures)
			checkFleet(t, c, sl, rep)
		})
	}
}
