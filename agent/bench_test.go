package agent

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
)

// BenchmarkTimeToFirstFrame measures, for viewers joining at random moments of a 2 s GOP,
// the time from the SDP offer leaving the viewer to the first complete keyframe arriving,
// through localcloud's signaling, on loopback. It reports p50, p95 and max over b.N viewers
// (run it with -benchtime=20x for twenty).
func BenchmarkTimeToFirstFrame(b *testing.B) {
	cloud, _ := liveAgent(b, func(c *config.Config) {
		c.Media.Source.Width, c.Media.Source.Height, c.Media.Source.Framerate = 1280, 720, 30
		c.Media.Encoder.GOP = 2 * time.Second
		c.Media.Encoder.BitrateKbps = 2000
	})
	var ttff []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		time.Sleep(rand.N(2 * time.Second)) // a random moment of the GOP
		b.StartTimer()
		v, err := dialViewer(b, cloud, fmt.Sprintf("bench-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		d, _ := firstKeyframe(b, v, 10*time.Second)
		ttff = append(ttff, d)
		b.StopTimer()
		v.Close()
		b.StartTimer()
		i++
	}
	sort.Slice(ttff, func(a, c int) bool { return ttff[a] < ttff[c] })
	pct := func(p float64) float64 {
		return float64(ttff[min(len(ttff)-1, int(p*float64(len(ttff))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
	b.ReportMetric(float64(ttff[len(ttff)-1].Microseconds())/1000, "max-ms")
}
