package agent

import (
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media"
	"github.com/stretchr/testify/require"
)

// The hub keeps media.hub.pre_roll of video only for motion recordings, which start in the
// past; otherwise its ring is the current GOP (what viewers and recorders start from).
func TestHubKeepsPreRollOnlyForMotionRecordings(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		minSpan time.Duration // the ring reaches at least this far back
		maxSpan time.Duration // and at most this far
	}{
		{mode: config.RecordMotion, minSpan: 5 * time.Second, maxSpan: 7 * time.Second},
		{mode: config.RecordContinuous, minSpan: 0, maxSpan: 2 * time.Second},
		{mode: config.RecordOff, minSpan: 0, maxSpan: 2 * time.Second},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Recording.Mode = tc.mode
			cfg.Media.Hub.PreRoll = 5 * time.Second
			a, err := New(Options{Config: cfg})
			require.NoError(t, err)
			// 20 s of a 10 fps stream with a 2 s GOP, on the hub's wall clock.
			start := time.Now().Add(-time.Minute)
			for i := range 200 {
				a.Hub().Publish(media.AccessUnit{Data: make([]byte, 1000), Keyframe: i%20 == 0,
					Wall: start.Add(time.Duration(i) * 100 * time.Millisecond)})
			}
			st := a.Hub().Stats()
			require.GreaterOrEqual(t, st.RingSpan, tc.minSpan, "ring %+v", st)
			require.LessOrEqual(t, st.RingSpan, tc.maxSpan, "ring %+v", st)
		})
	}
}
