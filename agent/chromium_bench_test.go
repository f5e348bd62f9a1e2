package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/headless"
)

// firstFrameProbe runs in the viewer page before its own script: it wraps RTCPeerConnection
// (keeping it as edgecamBench.pc) to note when the page's SDP offer is set (the page sends it
// right after) and polls the connection's stats every 5 ms for the first decoded video frame.
// Times are performance.now(), milliseconds from the navigation's start.
const firstFrameProbe = `(() => {
  const Orig = window.RTCPeerConnection;
  const bench = window.edgecamBench = { offer: 0, first: 0 };
  window.RTCPeerConnection = function (...args) {
    const pc = new Orig(...args);
    bench.pc = pc;
    const setLocal = pc.setLocalDescription.bind(pc);
    pc.setLocalDescription = async (d) => { const r = await setLocal(d); if (!bench.offer) bench.offer = performance.now(); return r; };
    const poll = async () => {
      if (pc.connectionState === 'closed') return;
      const report = await pc.getStats();
      let n = 0;
      report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0; });
      if (n > 0) { bench.first = performance.now(); return; }
      setTimeout(poll, 5);
    };
    poll();
    return pc;
  };
  window.RTCPeerConnection.prototype = Orig.prototype;
})();`

// BenchmarkTimeToFirstFrameChromium is BenchmarkTimeToFirstFrame with headless Chromium on
// localcloud's viewer page instead of a Go viewer: for viewers joining at random moments of a
// 2 s GOP (720p30 2 Mbit/s), the time from the page's SDP offer to Chromium's first decoded
// frame (offer-p50-ms, offer-p95-ms: comparable to the Go viewer's figure, plus decoding),
// and from the navigation's start (page-p50-ms, page-p95-ms: loading the page, signing in,
// ICE and DTLS too). One browser, a new tab per viewer; run it with -benchtime=10x.
func BenchmarkTimeToFirstFrameChromium(b *testing.B) {
	cloud, a := liveAgent(b, func(c *config.Config) {
		c.Media.Source.Width, c.Media.Source.Height, c.Media.Source.Framerate = 1280, 720, 30
		c.Media.Encoder.GOP = 2 * time.Second
		c.Media.Encoder.BitrateKbps = 2000
	})
	browserCtx, stopBrowser, err := headless.Start(context.Background())
	if errors.Is(err, headless.ErrNotInstalled) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer stopBrowser()
	url := cloud.KVSEndpoint() + "/viewer/?channel=" + liveThing

	var fromOffer, fromPage []float64
	for b.Loop() {
		b.StopTimer()
		if err := waitViewers(a, 0, 20*time.Second); err != nil {
			b.Fatal(err)
		}
		time.Sleep(rand.N(2 * time.Second)) // a random moment of the GOP
		b.StartTimer()
		offer, first, err := chromiumFirstFrame(browserCtx, url)
		if err != nil {
			b.Fatal(err)
		}
		fromOffer, fromPage = append(fromOffer, first-offer), append(fromPage, first)
	}
	pct := func(v []float64, p float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	b.ReportMetric(pct(fromOffer, 0.5), "offer-p50-ms")
	b.ReportMetric(pct(fromOffer, 0.95), "offer-p95-ms")
	b.ReportMetric(pct(fromPage, 0.5), "page-p50-ms")
	b.ReportMetric(pct(fromPage, 0.95), "page-p95-ms")
}

// chromiumFirstFrame opens the viewer page in a new tab and returns, in milliseconds from the
// navigation's start, when the page's offer was set and when its first frame was decoded.
// The tab is closed before it returns.
func chromiumFirstFrame(browserCtx context.Context, url string) (offer, first float64, err error) {
	tab, closeTab := chromedp.NewContext(browserCtx)
	defer closeTab()
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	err = chromedp.Run(ctx,
		chromedp.ActionFunc(func(ctx context.Context) error {
			_, err := page.AddScriptToEvaluateOnNewDocument(firstFrameProbe).Do(ctx)
			return err
		}),
		chromedp.Navigate(url))
	if err != nil {
		return 0, 0, fmt.Errorf("opening the viewer page: %w", err)
	}
	var st struct {
		Offer float64 `json:"offer"`
		First float64 `json:"first"`
		Error string  `json:"error"`
	}
	for {
		if err := chromedp.Run(ctx, chromedp.Evaluate(`({offer: edgecamBench.offer, first: edgecamBench.first, error: (window.edgecamStats || {}).error || ''})`, &st)); err != nil {
			return 0, 0, fmt.Errorf("reading the page's timings (no first frame within 30 s?): %w", err)
		}
		if st.Error != "" {
			return 0, 0, fmt.Errorf("the viewer page reports: %s", st.Error)
		}
		if st.First > 0 {
			// Close the connection before the tab: the agent sees the viewer leave at once
			// (DTLS close) instead of after ICE's timeout.
			_ = chromedp.Run(ctx, chromedp.Evaluate(`edgecamBench.pc.close()`, nil))
			return st.Offer, st.First, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("no frame decoded within 30 s of opening the viewer page")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitViewers waits until the agent serves n viewers (a closed tab's peer has left).
func waitViewers(a *Agent, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for a.WebRTC().Viewers() != n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent still serves %d viewers %s after the tabs closed, want %d", a.WebRTC().Viewers(), within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
