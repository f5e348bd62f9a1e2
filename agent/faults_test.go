package agent

// The fault suite (make test-faults runs every TestFault*): each test puts a real
// component of the agent's world (the RTSP camera, localcloud's broker, credentials
// provider and KVS endpoints) through a fault a camera meets, and checks what the README
// promises for it. README.md, "Fault suite", lists them.

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// TestFaultRTSPSourceFlaps10Times: the IP camera goes away and comes back ten times. Each
// time the supervisor restarts the pipeline (counted in the status and in
// edgecam_video_pipeline_restarts_total), the viewer that stayed connected gets frames
// again, none of them broken (the hub waits for the new stream's keyframe), and the
// process keeps no goroutine or file descriptor per restart. A new viewer plays at the end.
func TestFaultRTSPSourceFlaps10Times(t *testing.T) {
	const flaps = 10
	cam := rtspCamera(t)
	cloud, a := liveAgent(t, func(c *config.Config) {
		src := &c.Media.Source
		src.Kind, src.URL, src.Transport, src.Latency = config.SourceRTSP, cam.URL(), config.TransportTCP, 100*time.Millisecond
		c.Motion.Enabled = false
		c.Media.StallTimeout, c.Media.RestartBackoff = time.Second, time.Second
	})
	v, err := dialViewer(t, cloud, "through-the-flaps")
	require.NoError(t, err)
	firstKeyframe(t, v, 20*time.Second)
	go func() { // the test reads counters; keep the viewer's frame channel drained
		for range v.Frames() {
		}
	}()
	restarts := func() int { _, n := a.Source().Stats(); return n }
	received := func() int { n, _, _ := v.Stats(); return n }

	var goroutines, fds int
	for i := range flaps {
		before := restarts()
		cam.Stop()
		down := time.Now()
		require.Eventually(t, func() bool { return restarts() > before }, 20*time.Second, 20*time.Millisecond,
			"flap %d: the supervisor notices the camera went away and restarts the pipeline", i+1)
		require.NoError(t, cam.Start())
		frames, got := a.Frames(), received()
		require.Eventually(t, func() bool { return a.Frames() >= frames+10 && received() >= got+10 }, 30*time.Second, 20*time.Millisecond,
			"flap %d: frames flow again, to the hub and to the viewer that stayed (hub %d→%d, viewer %d→%d)", i+1, frames, a.Frames(), got, received())
		t.Logf("flap %d: frames again %s after the camera went away (%d restarts so far)", i+1, time.Since(down).Round(time.Millisecond), restarts())
		if i == 0 { // after one whole cycle, whatever starts lazily has started
			goroutines, fds = runtime.NumGoroutine(), openFDs(t)
		}
	}
	_, broken, _ := v.Stats()
	require.Zero(t, broken, "no undecodable frame across the restarts: each new stream starts on its keyframe")

	st := a.StatusNow("running")
	require.GreaterOrEqual(t, st.Video.Restarts, flaps, "the status counts the restarts")
	fams := scrape(t, a.MetricsAddr())
	require.GreaterOrEqual(t, value(t, fams, "edgecam_video_pipeline_restarts_total"), float64(flaps), "so does /metrics")

	// Nothing kept per restart: nine more cycles add fewer goroutines and descriptors than
	// one each would (some slack for pion's, gortsplib's and the HTTP client's own coming
	// and going: up to +3 seen).
	require.Eventually(t, func() bool {
		return runtime.NumGoroutine() <= goroutines+6 && openFDs(t) <= fds+6
	}, 15*time.Second, 100*time.Millisecond, "goroutines %d → %d, file descriptors %d → %d over %d restarts",
		goroutines, runtime.NumGoroutine(), fds, openFDs(t), flaps-1)
	t.Logf("over %d restarts: goroutines %d → %d, file descriptors %d → %d", flaps-1, goroutines, runtime.NumGoroutine(), fds, openFDs(t))

	v2, err := dialViewer(t, cloud, "after-the-flaps")
	require.NoError(t, err)
	firstKeyframe(t, v2, 15*time.Second)
}

// cutProxy forwards TCP connections from a port on 127.0.0.1 to target, and can go down
// (refusing new connections and cutting those open) and come back on the same port: an
// endpoint that becomes unreachable, as seen from the device.
type cutProxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	dials int
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	p.addr = "127.0.0.1:0"
	p.up()
	t.Cleanup(p.down)
	return p
}

// up listens (again) on the proxy's port.
func (p *cutProxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(p.t, err)
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.dials++
			p.conns[c] = true
			p.mu.Unlock()
			go p.forward(c)
		}
	}()
}

func (p *cutProxy) forward(c net.Conn) {
	defer func() { p.mu.Lock(); delete(p.conns, c); p.mu.Unlock(); c.Close() }()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conns[u] = true
	p.mu.Unlock()
	defer func() { p.mu.Lock(); delete(p.conns, u); p.mu.Unlock(); u.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// down closes the listener and every connection through the proxy.
func (p *cutProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// connections returns how many connections the proxy accepted.
func (p *cutProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dials
}

// TestFaultCredentialsEndpointDownThroughRefresh: the AWS IoT credentials provider is
// unreachable from before the credentials' refresh point (credentials.refresh_before ahead
// of their expiry) until after they expired. Live view goes on with the cached credentials
// while they are valid: the signaling connection cut in the refresh window comes back on
// them and a viewer plays. When the provider is back, the agent fetches new credentials
// and the next reconnect, after the old ones expired, serves a viewer again.
func TestFaultCredentialsEndpointDownThroughRefresh(t *testing.T) {
	// A minute of credentials: on a loaded machine the agent's start and the first master
	// take up to half of it, and the refresh window must still lie ahead with seconds to spare.
	const lifetime, refreshBefore = 60 * time.Second, 15 * time.Second
	cloud := startCloudWith(t, localcloudOptions(lifetime))
	proxy := newCutProxy(t, cloud.CredentialsEndpoint())
	cfg := cloudConfig(t, cloud)
	cfg.Device.Serial = liveThing
	cfg.WebRTC.STUN = "none"
	cfg.Motion.Enabled = false
	cfg.Credentials.Endpoint = proxy.addr
	cfg.Credentials.RefreshBefore = refreshBefore
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg, RequireCloud: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	waitMaster(t, cloud, 20*time.Second)

	// The credentials the agent holds, and when the issuer lets them expire.
	require.NotNil(t, a.Credentials())
	first, err := a.Credentials().Retrieve(ctx)
	require.NoError(t, err)
	issued, ok := cloud.Credentials(first.AccessKeyID)
	require.True(t, ok)
	expires := issued.Expiration
	dials := proxy.connections()

	proxy.down() // the credentials provider becomes unreachable
	// Into the refresh window (its latest start: refresh_before less the cache's 20 %
	// jitter), while the credentials still have seconds to live.
	waitUntil(expires.Add(-refreshBefore * 8 / 10).Add(time.Second))
	require.Positive(t, time.Until(expires.Add(-3*time.Second)), "the test is too late for the credentials' last seconds (machine too slow)")
	require.NoError(t, cloud.DropSignalingMaster(liveThing))
	cut := time.Now()
	require.Eventually(t, func() bool {
		m, _ := cloud.SignalingPeers(liveThing)
		return m && time.Since(cut) > 50*time.Millisecond
	}, time.Until(expires), 20*time.Millisecond, "the master reconnects on the cached credentials while the provider is down")
	v, err := dialViewer(t, cloud, "provider-down")
	require.NoError(t, err)
	firstKeyframe(t, v, 15*time.Second)
	require.Equal(t, dials, proxy.connections(), "the provider was down all along")
	t.Logf("signaling back and a viewer played %s after the cut, %s before the cached credentials expired",
		time.Since(cut).Round(time.Millisecond), time.Until(expires).Round(time.Millisecond))

	// The provider comes back after the old credentials expired; the next reconnect
	// fetches new ones.
	waitUntil(expires.Add(time.Second))
	proxy.up()
	require.NoError(t, cloud.DropSignalingMaster(liveThing))
	cut = time.Now()
	require.Eventually(t, func() bool {
		m, _ := cloud.SignalingPeers(liveThing)
		return m && time.Since(cut) > 50*time.Millisecond
	}, 20*time.Second, 20*time.Millisecond, "the master reconnects with new credentials once the provider is back")
	v2, err := dialViewer(t, cloud, "provider-back")
	require.NoError(t, err)
	firstKeyframe(t, v2, 15*time.Second)
	again, err := a.Credentials().Retrieve(ctx)
	require.NoError(t, err)
	require.NotEqual(t, first.AccessKeyID, again.AccessKeyID, "new credentials after the outage")
	require.Greater(t, proxy.connections(), dials)
}

func localcloudOptions(lifetime time.Duration) localcloud.Options {
	return localcloud.Options{AllowSerials: []string{liveThing}, CredentialLifetime: lifetime}
}

// waitUntil sleeps until the wall clock reads at: the fault's timing is the test's subject
// (credentials expire by the wall clock), not a guess at how long something takes.
func waitUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}

// firedEvents collects the motion events the agent fired, from its own log lines.
type firedEvents struct {
	mu  sync.Mutex
	evs []MotionEvent
}

func (f *firedEvents) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if !strings.HasSuffix(e.LoggerName, "motion") || (e.Message != "motion start" && e.Message != "motion end") {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, fl := range fields {
		fl.AddTo(enc)
	}
	start, _ := enc.Fields["start"].(time.Time)
	f.mu.Lock()
	f.evs = append(f.evs, MotionEvent{Event: strings.TrimPrefix(e.Message, "motion "), Start: start.UTC(), Timestamp: e.Time})
	f.mu.Unlock()
	return nil
}

func (f *firedEvents) list() []MotionEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.evs)
}

// TestFaultBrokerRestartWhileMotionEventsFire: the camera's detector fires real motion
// events (the ball clip, looped) while localcloud's broker goes down and comes back twice.
// The README's promise: events fired while the connection is down arrive later, in order,
// with the time they happened; nothing is lost (at least once: duplicates are allowed).
func TestFaultBrokerRestartWhileMotionEventsFire(t *testing.T) {
	clip, _ := testclip.Path(t, testclip.Ball)
	opts := localcloud.Options{Dir: t.TempDir(), AllowSerials: []string{"cam-agent-1"}, MQTTPort: freePort(t), CredentialsPort: freePort(t), KVSPort: freePort(t)}
	rc := &restartableCloud{t: t, opts: opts}
	rc.start()
	t.Cleanup(rc.stop)
	var got eventLog
	require.NoError(t, rc.cloud.Observe("edgecam/+/events/motion", got.add))
	cfg := cloudConfig(t, rc.cloud)
	cfg.WebRTC.Enabled = false
	cfg.Media.Source.Kind, cfg.Media.Source.Path, cfg.Media.Source.Loop = config.SourceFile, clip, true
	cfg.Motion.Enabled = true
	cfg.Motion.PostRoll, cfg.Motion.EventGap = time.Second, time.Second
	require.Empty(t, cfg.Validate())
	var fired firedEvents
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core(), &firedCore{f: &fired}))
	a, err := New(Options{Config: cfg, Log: log})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	for outage := 1; outage <= 2; outage++ {
		// The broker goes down just after an event reached it, and stays down while the
		// detector fires the next two.
		n := len(fired.list())
		require.Eventually(t, func() bool { return len(fired.list()) > n && len(got.distinct()) == len(fired.list()) }, 60*time.Second, 20*time.Millisecond,
			"outage %d: an event fires and reaches the broker (fired %d, received %d)", outage, len(fired.list()), len(got.distinct()))
		rc.stop()
		before := len(fired.list())
		require.Eventually(t, func() bool { return len(fired.list()) >= before+2 }, 60*time.Second, 20*time.Millisecond,
			"outage %d: the detector fires while the broker is down", outage)
		rc.start()
		require.NoError(t, rc.cloud.Observe("edgecam/+/events/motion", got.add))
		back := time.Now()
		require.Eventually(t, func() bool { return len(got.distinct()) >= len(fired.list()) }, 60*time.Second, 20*time.Millisecond,
			"outage %d: the events fired while the broker was down arrive (fired %d, received %d)", outage, len(fired.list()), len(got.distinct()))
		t.Logf("outage %d: %d events fired while the broker was down, delivered %s after it came back", outage, len(fired.list())-before, time.Since(back).Round(time.Millisecond))
	}
	want, recv := fired.list(), got.distinct()
	require.GreaterOrEqual(t, len(recv), len(want))
	for i, w := range want {
		require.Equal(t, w.Event, recv[i].Event, "event %d in order", i)
		require.True(t, w.Start.Equal(recv[i].Start), "event %d: start %s, got %s", i, w.Start, recv[i].Start)
		require.WithinRange(t, recv[i].Timestamp, w.Timestamp.Add(-time.Second), w.Timestamp,
			"event %d keeps the time it fired (logged %s), not the time it was sent", i, w.Timestamp)
	}
	require.Eventually(t, func() bool { return a.EventsWaiting() == 0 }, 10*time.Second, 10*time.Millisecond, "the queue on disk empties")
}

// firedCore is a zap core that hands every entry to firedEvents.
type firedCore struct {
	f      *firedEvents
	fields []zapcore.Field
}

func (c *firedCore) Enabled(zapcore.Level) bool { return true }
func (c *firedCore) With(fields []zapcore.Field) zapcore.Core {
	return &firedCore{f: c.f, fields: append(slices.Clone(c.fields), fields...)}
}
func (c *firedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}
func (c *firedCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return c.f.Write(e, append(slices.Clone(c.fields), fields...))
}
func (c *firedCore) Sync() error { return nil }

// TestFaultKVSEndpointDown60s: localcloud (the KVS control plane and PutMedia endpoint
// with it) is down for 60 s while the native uploader records. The README's promise: the
// spool keeps every fragment until KVS persisted it, the backlog drains oldest first after
// the outage, and KVS ends up with the whole timeline, in order, none twice. (About 80 s:
// the one long test of the fault suite.)
func TestFaultKVSEndpointDown60s(t *testing.T) {
	const outage = 60 * time.Second
	const stream = "cam-outage"
	rc := &restartableCloud{t: t, opts: localcloud.Options{Dir: t.TempDir(), AllowSerials: []string{"cam-agent-1"},
		MQTTPort: freePort(t), CredentialsPort: freePort(t), KVSPort: freePort(t)}}
	rc.start()
	t.Cleanup(rc.stop)
	cfg := cloudConfig(t, rc.cloud)
	cfg.WebRTC.Enabled = false
	cfg.Motion.Enabled = false
	cfg.Media.Source.Framerate = 15
	cfg.Media.Encoder.GOP = 2 * time.Second
	cfg.Recording.Mode = config.RecordContinuous
	cfg.Recording.Local.Enabled = false
	cfg.Recording.KVS.Enabled = true
	cfg.Recording.KVS.Uploader = config.KVSUploaderNative
	cfg.Recording.KVS.StreamName = stream
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg, RequireCloud: true, Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.Eventually(t, func() bool { return persisted(rc, stream) >= 2 }, 60*time.Second, 100*time.Millisecond, "fragments persisted before the outage")

	rc.stop()
	down := time.Now()
	framesAtDown := a.Frames()
	time.Sleep(outage) // the outage itself: what is tested is its length
	require.Greater(t, a.Frames(), framesAtDown+uint64(outage/time.Second)*10, "the camera kept capturing through the outage")
	rc.start()
	up := time.Now()

	// The backlog drains: the stream covers the outage and catches up with live video.
	var list []checkFragment
	require.Eventually(t, func() bool {
		list = listStream(t, rc.cloud, stream)
		return len(list) > 0 && list[len(list)-1].end().After(up.Add(2*time.Second))
	}, 90*time.Second, 250*time.Millisecond, "the spool drains after the outage and live fragments follow")
	t.Logf("localcloud down %s; %d fragments %s → %s, live again %s after it came back",
		outage, len(list), list[0].start().Format("15:04:05.000"), list[len(list)-1].end().Format("15:04:05.000"), time.Since(up).Round(100*time.Millisecond))
	gap, at := largestGap(list)
	require.Less(t, gap, 200*time.Millisecond, "no hole in the timeline (largest gap %s at %s; down at %s)", gap, at.Format("15:04:05.000"), down.Format("15:04:05.000"))
	require.True(t, list[0].start().Before(down.Add(-2*time.Second)), "the timeline begins before the outage")
	st, err := rc.cloud.KVSStreamStats(stream)
	require.NoError(t, err)
	require.Zero(t, st.Duplicates, "nothing stored twice")
	require.Empty(t, st.Errors, "no ERROR acks")
	for i := 1; i < len(list); i++ {
		require.False(t, list[i].start().Before(list[i-1].end().Add(-50*time.Millisecond)), "fragments %d and %d overlap", i-1, i)
	}
}

// TestFaultClockStepDuringRun: while the camera serves live view, the clock between it and
// AWS steps by 20 minutes one way, then 40 minutes the other (the world's clock as KVS
// sees it: the device's own, stepped at its first NTP sync, looks the same from the
// service). The README's promise: the signaling client corrects its clock from the
// service's Date when a signature is refused for time, reconnects, and viewers play.
func TestFaultClockStepDuringRun(t *testing.T) {
	cloud, _ := liveAgent(t, func(c *config.Config) { c.Motion.Enabled = false })
	for i, step := range []time.Duration{20 * time.Minute, -20 * time.Minute} {
		require.NoError(t, cloud.SetKVSClockSkew(step))
		require.NoError(t, cloud.DropSignalingMaster(liveThing)) // the reconnect signs at the old time
		cut := time.Now()
		require.Eventually(t, func() bool {
			m, _ := cloud.SignalingPeers(liveThing)
			return m && time.Since(cut) > 50*time.Millisecond
		}, 20*time.Second, 20*time.Millisecond, "step %d (%s): the master reconnects at the corrected time", i+1, step)
		// A viewer whose clock agrees with the service's: it connects while the service
		// reads the true time, which it then reads stepped again.
		require.NoError(t, cloud.SetKVSClockSkew(0))
		v, err := dialViewer(t, cloud, fmt.Sprintf("after-step-%d", i+1))
		require.NoError(t, err)
		require.NoError(t, cloud.SetKVSClockSkew(step))
		firstKeyframe(t, v, 15*time.Second)
		t.Logf("step %d (%s): a viewer played %s after the reconnect began", i+1, step, time.Since(cut).Round(time.Millisecond))
	}
}

// smallDisk mounts a tmpfs of size bytes on a new directory (root only; skips otherwise).
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// segments lists the recordings' files in dir (the ballast left out), oldest first.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if e.Name() != "ballast" && !e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// framesUpToCut counts the frames ffprobe decodes in a file that may have been cut short
// (Matroska written through plays up to its last complete part).
func framesUpToCut(t *testing.T, path string) int {
	t.Helper()
	out, _ := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	n, err := strconv.Atoi(strings.TrimSpace(lines[len(lines)-1]))
	require.NoError(t, err, "ffprobe %s: %s", path, out)
	for _, l := range lines[:len(lines)-1] {
		require.Contains(t, l, "File ended prematurely", "ffprobe %s: only the cut may be wrong: %s", path, out)
	}
	return n
}

// TestFaultDiskFull: another program fills the recordings' file system while the agent
// records (a segment is open). The README's promise: recordings never fill the disk — the
// janitor deletes the oldest, and with nothing left to delete recording pauses (and says
// so) while the camera, live view and the agent go on; the file cut short is deleted when
// it holds no frame; when space comes back recording resumes by itself, in playable files.
func TestFaultDiskFull(t *testing.T) {
	dir := smallDisk(t, 16<<20)
	cfg := testConfig(t)
	cfg.Motion.Enabled = false
	cfg.Recording.Mode = config.RecordContinuous
	cfg.Recording.Local.Dir = dir
	cfg.Recording.Local.MinFreeBytes = 1 << 20 // raised to two segments by the janitor
	require.Empty(t, cfg.Validate())
	core, logs := observer.New(zap.InfoLevel)
	a, err := New(Options{Config: cfg, Log: zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core()))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.Eventually(t, func() bool { return len(segments(t, dir)) >= 2 }, 30*time.Second, 50*time.Millisecond, "recording")

	// The disk fills up, to the last byte, mid-segment.
	ballast, err := os.Create(filepath.Join(dir, "ballast"))
	require.NoError(t, err)
	chunk := make([]byte, 64<<10)
	for {
		if _, err := ballast.Write(chunk); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
	}
	require.NoError(t, ballast.Close())
	full := time.Now()
	require.Eventually(t, func() bool { return logs.FilterMessageSnippet("recording paused").Len() > 0 }, 30*time.Second, 50*time.Millisecond,
		"with nothing left to delete, recording pauses and says so")
	frames := a.Frames()
	require.Eventually(t, func() bool { return a.Frames() > frames+30 }, 10*time.Second, 20*time.Millisecond, "the camera goes on while recording pauses")
	for _, f := range segments(t, dir) {
		require.Positive(t, framesUpToCut(t, f), "what is left on the full disk plays: %s", f)
	}

	// Space comes back: recording resumes by itself in new, playable files.
	require.NoError(t, os.Remove(filepath.Join(dir, "ballast")))
	freed := time.Now()
	before := segments(t, dir)
	require.Eventually(t, func() bool {
		now := segments(t, dir)
		return len(now) >= 2 && !slices.Contains(before, now[len(now)-2])
	}, 75*time.Second, 50*time.Millisecond, "new segments once space came back (the janitor looks every 30 s; before %v)", before)
	now := segments(t, dir)
	require.Positive(t, probeFrames(t, now[len(now)-2]), "the first new segment plays")
	t.Logf("disk full %s; paused; space back after %s; recording again %s after", full.Format("15:04:05.000"), freed.Sub(full).Round(time.Millisecond), time.Since(freed).Round(time.Millisecond))
}

// TestFaultSignalingCutAndGoAway: the signaling WebSocket is cut (no close frame), then the
// service sends GO_AWAY (it closes the old connection a minute later, as AWS does). The
// README's promise: the master reconnects at once each time (edgecam_signaling_reconnects_total
// counts it) — on GO_AWAY before the service closes the old connection — and a new viewer
// plays.
func TestFaultSignalingCutAndGoAway(t *testing.T) {
	cloud, a := liveAgent(t, func(c *config.Config) { c.Motion.Enabled = false })
	reconnects := func() float64 { return value(t, scrape(t, a.MetricsAddr()), "edgecam_signaling_reconnects_total") }
	for _, tc := range []struct {
		name    string
		disrupt func() error
	}{
		{"socket cut", func() error { return cloud.DropSignalingMaster(liveThing) }},
		{"GO_AWAY", func() error { return cloud.SignalingGoAway(liveThing) }},
	} {
		before := reconnects()
		start := time.Now()
		require.NoError(t, tc.disrupt())
		require.Eventually(t, func() bool {
			m, _ := cloud.SignalingPeers(liveThing)
			return m && reconnects() > before
		}, 10*time.Second, 20*time.Millisecond, "%s: the master connects again at once", tc.name)
		v, err := dialViewer(t, cloud, "after-"+strings.ReplaceAll(tc.name, " ", "-"))
		require.NoError(t, err)
		firstKeyframe(t, v, 15*time.Second)
		t.Logf("%s: reconnected and a new viewer played %s after it", tc.name, time.Since(start).Round(time.Millisecond))
	}
}
