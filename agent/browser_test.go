package agent

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/edgecam/edgecam/internal/headless"
	"github.com/stretchr/testify/require"
)

// pageStats is what the viewer page exposes as window.edgecamStats.
type pageStats struct {
	State         string `json:"state"`
	FramesDecoded int    `json:"framesDecoded"`
	BitrateKbps   int    `json:"bitrateKbps"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	Error         string `json:"error"`
}

// TestViewerPageInChromium opens localcloud's viewer page in headless Chromium: it signs
// in with viewer.json's key pair, signals through the KVS stand-in and decodes the camera's
// H.264.
func TestViewerPageInChromium(t *testing.T) {
	cloud, a := liveAgent(t, nil)
	ctx, stopBrowser, err := headless.Start(context.Background())
	require.NoError(t, err)
	defer stopBrowser()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	url := cloud.KVSEndpoint() + "/viewer/?channel=" + liveThing
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(url)))
	var st pageStats
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.edgecamStats`, &st)))
		require.Empty(t, st.Error, "the page reports an error")
		if st.FramesDecoded > 30 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("viewer page: state %s, %d frames decoded, %dx%d, %d kbit/s", st.State, st.FramesDecoded, st.Width, st.Height, st.BitrateKbps)
	require.Equal(t, "connected", st.State)
	require.Greater(t, st.FramesDecoded, 30, "Chromium decodes the camera's H.264")
	require.Equal(t, 320, st.Width)
	require.Equal(t, 180, st.Height)
	require.Equal(t, 1, a.WebRTC().Viewers())
}
