package localcloud

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/edgecam/edgecam/internal/headless"
	"github.com/stretchr/testify/require"
)

type recordingsStats struct {
	State         string  `json:"state"`
	Stream        string  `json:"stream"`
	Fragments     int     `json:"fragments"`
	Spans         []any   `json:"spans"`
	Motion        []any   `json:"motion"`
	Playing       *int    `json:"playing"`
	CurrentTime   float64 `json:"currentTime"`
	FramesDecoded int     `json:"framesDecoded"`
	Error         string  `json:"error"`
}

// TestRecordingsPageInChromium opens the recordings page in headless Chromium: it lists the
// stream's fragments through ListFragments (SigV4 in WebCrypto) and plays the recorded span
// from GetClip.
func TestRecordingsPageInChromium(t *testing.T) {
	c := start(t, Options{})
	_, first := recordClip(t, c, "cam")
	// The agent's motion event for thing "cam", through the broker.
	motionStart := time.UnixMilli(first + 2500).UTC()
	motionEnd := motionStart.Add(2 * time.Second)
	for _, ev := range []map[string]any{
		{"thingName": "cam", "event": "start", "start": motionStart, "preRollFrom": motionStart.Add(-2 * time.Second), "peakScore": 0.4, "timestamp": motionStart},
		{"thingName": "cam", "event": "end", "start": motionStart, "end": motionEnd, "preRollFrom": motionStart.Add(-2 * time.Second), "peakScore": 0.6, "timestamp": motionEnd},
	} {
		payload, err := json.Marshal(ev)
		require.NoError(t, err)
		require.NoError(t, c.broker.srv.Publish("edgecam/cam/events/motion", payload, false, 1))
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(c.KVSEndpoint() + "/kvs/streams/cam/motion")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var got struct{ Motion []motionSpan }
		return json.NewDecoder(resp.Body).Decode(&got) == nil && len(got.Motion) == 1 && got.Motion[0].End != nil && got.Motion[0].PeakScore == 0.6
	}, 10*time.Second, 50*time.Millisecond, "the motion event reaches localcloud")

	ctx, stopBrowser, err := headless.Start(context.Background())
	require.NoError(t, err)
	defer stopBrowser()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.KVSEndpoint()+"/viewer/recordings.html?stream=cam&play")))
	var st recordingsStats
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.edgecamRecordings`, &st)))
		require.Empty(t, st.Error, "the page reports an error")
		if st.CurrentTime > 1 && st.FramesDecoded > 10 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("recordings page: %d fragments, %d spans, playing %v, currentTime %.2f s, %d frames decoded", st.Fragments, len(st.Spans), st.Playing, st.CurrentTime, st.FramesDecoded)
	require.Equal(t, "cam", st.Stream)
	require.Equal(t, 3, st.Fragments)
	require.Len(t, st.Spans, 1)
	require.Len(t, st.Motion, 1, "the motion interval is on the timeline")
	require.NotNil(t, st.Playing)
	require.Greater(t, st.CurrentTime, 1.0, "the clip plays")
	require.Greater(t, st.FramesDecoded, 10)
}
