package agent

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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

// chromium finds Debian's Chromium.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium is not installed: run scripts/install-deps.sh")
	return ""
}

// TestViewerPageInChromium opens localcloud's viewer page in headless Chromium: it signs
// in with viewer.json's key pair, signals through the KVS stand-in and decodes the camera's
// H.264.
func TestViewerPageInChromium(t *testing.T) {
	cloud, a := liveAgent(t, nil)
	profile, err := os.MkdirTemp("", "edgecam-chromium-")
	require.NoError(t, err)
	defer os.RemoveAll(profile)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.UserDataDir(profile),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
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
