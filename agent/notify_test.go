package agent

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

// notifySocket is a real NOTIFY_SOCKET: a unixgram socket that records every sd_notify
// datagram with the time it came, as systemd would receive them.
type notifySocket struct {
	mu    sync.Mutex
	msgs  []notifyMsg
	added chan struct{}
}

type notifyMsg struct {
	at   time.Time
	vars map[string]string
}

// listenNotify listens on a socket in a temporary directory and points NOTIFY_SOCKET and
// WATCHDOG_USEC at it.
func listenNotify(t *testing.T, watchdog time.Duration) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(int64(watchdog/time.Microsecond), 10))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
	}
	t.Setenv("WATCHDOG_PID", "")
	s := &notifySocket{added: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			vars := map[string]string{}
			for line := range strings.SplitSeq(string(buf[:n]), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					vars[k] = v
				}
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, notifyMsg{at: time.Now(), vars: vars})
			s.mu.Unlock()
			select {
			case s.added <- struct{}{}:
			default:
			}
		}
	}()
	return s
}

// wait returns the first message after from that satisfies ok, or fails after within.
func (s *notifySocket) wait(t *testing.T, from time.Time, within time.Duration, what string, ok func(map[string]string) bool) notifyMsg {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for _, m := range s.msgs {
			if !m.at.Before(from) && ok(m.vars) {
				s.mu.Unlock()
				return m
			}
		}
		s.mu.Unlock()
		select {
		case <-s.added:
		case <-deadline.C:
			t.Fatalf("no %s from the agent within %s; got %v", what, within, s.all())
		}
	}
}

func (s *notifySocket) all() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]string, 0, len(s.msgs))
	for _, m := range s.msgs {
		out = append(out, m.vars)
	}
	return out
}

// count returns the times of the messages with key=value between from and to.
func (s *notifySocket) times(key, value string, from, to time.Time) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for _, m := range s.msgs {
		if m.vars[key] == value && !m.at.Before(from) && m.at.Before(to) {
			out = append(out, m.at)
		}
	}
	return out
}

func hasKey(k, v string) func(map[string]string) bool {
	return func(m map[string]string) bool { return m[k] == v }
}

func statusContains(sub string) func(map[string]string) bool {
	return func(m map[string]string) bool { return strings.Contains(m["STATUS"], sub) }
}

// rtspCamera serves the ball clip over real RTSP, as an IP camera that can go away.
func rtspCamera(t *testing.T) *rtsptest.Server {
	t.Helper()
	clipPath, side := testclip.Path(t, testclip.Ball)
	clip, err := rtsptest.ReadClip(clipPath)
	require.NoError(t, err)
	srv, err := rtsptest.NewServer(clip, time.Second/time.Duration(side.FPS))
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(srv.Stop)
	return srv
}

// TestNotifyReadyStatusWatchdog runs the service under a real NOTIFY_SOCKET with a 2 s
// watchdog: READY=1 once frames flow, STATUS= with the phase, WATCHDOG=1 every half
// second; the camera goes away and WATCHDOG=1 stops within the watchdog period (systemd
// would restart the service); it comes back and so do the keep-alives; a clean stop says
// STOPPING=1.
func TestNotifyReadyStatusWatchdog(t *testing.T) {
	const watchdog = 2 * time.Second
	sock := listenNotify(t, watchdog)
	cam := rtspCamera(t)
	cfg := testConfig(t)
	src := &cfg.Media.Source
	src.Kind, src.URL, src.Transport, src.Latency = config.SourceRTSP, cam.URL(), config.TransportTCP, 100*time.Millisecond
	cfg.Motion.Enabled = false // not what this test is about
	cfg.Media.StallTimeout, cfg.Media.RestartBackoff = time.Second, time.Second
	cfg.Recording.Mode = config.RecordOff
	cfg.Metrics.Listen = "127.0.0.1:0"
	require.Empty(t, cfg.Validate())

	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunService(ctx, ServiceOptions{Options: Options{Config: cfg}, TimesyncDir: "-"}) }()
	defer func() { cancel(); <-done }()

	ready := sock.wait(t, start, 20*time.Second, "READY=1", hasKey("READY", "1"))
	require.Contains(t, ready.vars["STATUS"], "streaming (rtsp)", "READY=1 comes with the status")
	require.Contains(t, ready.vars["STATUS"], "cloud off")
	// Keep-alives (every watchdog/4) while frames flow: never a period without one.
	sock.wait(t, ready.at.Add(2*watchdog), 3*watchdog, "WATCHDOG=1", hasKey("WATCHDOG", "1"))
	pings := sock.times("WATCHDOG", "1", ready.at, ready.at.Add(2*watchdog))
	require.GreaterOrEqual(t, len(pings), 2)
	for i := 1; i < len(pings); i++ {
		require.Less(t, pings[i].Sub(pings[i-1]), watchdog, "a keep-alive within each period")
	}

	// The camera goes away: the frames stop.
	cam.Stop()
	stalled := time.Now()
	sock.wait(t, stalled, 10*time.Second, "a stalled STATUS=", statusContains("video stalled"))
	// No keep-alive for a whole period once frames have been gone for half of one: by then
	// systemd has given up on the service.
	quiet := stalled.Add(watchdog)
	wait := time.NewTimer(time.Until(quiet.Add(watchdog)))
	<-wait.C
	pings = sock.times("WATCHDOG", "1", stalled, time.Now())
	require.NotEmpty(t, pings, "frames are fresh just after the camera went away")
	last := pings[len(pings)-1]
	require.Less(t, last.Sub(stalled), watchdog, "WATCHDOG=1 stops within the watchdog period of the stall")
	require.Empty(t, sock.times("WATCHDOG", "1", quiet, time.Now()), "and nothing for a whole period after")

	// The camera comes back: the source restarts it, the keep-alives resume.
	require.NoError(t, cam.Start())
	back := time.Now()
	sock.wait(t, back, 20*time.Second, "WATCHDOG=1 after the camera came back", hasKey("WATCHDOG", "1"))
	sock.wait(t, back, 5*time.Second, "a streaming STATUS=", statusContains("streaming"))

	cancel()
	require.NoError(t, <-done)
	done <- nil
	sock.wait(t, back, time.Second, "STOPPING=1", hasKey("STOPPING", "1"))
}

// TestWatchdogStopsWhenSupervisorHangs: frames flow, but the supervisor loop is stuck (here
// in a reload whose configuration never loads): WATCHDOG=1 stops, so that systemd
// restarts a process whose supervisor no longer runs.
func TestWatchdogStopsWhenSupervisorHangs(t *testing.T) {
	const watchdog = time.Second
	sock := listenNotify(t, watchdog)
	cfg := testConfig(t)
	cfg.Recording.Mode = config.RecordOff
	cfg.Metrics.Listen = ""
	cfg.Motion.Enabled = false
	reloads := make(chan struct{}, 1)
	release := make(chan struct{})
	var agent *Agent
	var mu sync.Mutex
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunService(ctx, ServiceOptions{
			Options: Options{Config: cfg}, TimesyncDir: "-", Reloads: reloads,
			Load: func() (config.Config, error) {
				<-release // a file system that never answers
				return config.Config{}, errors.New("gave up")
			},
			OnAgent: func(a *Agent) { mu.Lock(); agent = a; mu.Unlock() },
		})
	}()
	defer func() { cancel(); <-done }()
	ready := sock.wait(t, start, 20*time.Second, "READY=1", hasKey("READY", "1"))
	sock.wait(t, ready.at, 2*watchdog, "WATCHDOG=1", hasKey("WATCHDOG", "1"))

	reloads <- struct{}{}
	hung := time.Now()
	timer := time.NewTimer(2 * watchdog)
	<-timer.C
	mu.Lock()
	a := agent
	mu.Unlock()
	require.Less(t, a.frameAge(), watchdog/2, "frames still flow")
	pings := sock.times("WATCHDOG", "1", hung, time.Now())
	require.LessOrEqual(t, len(pings), 1, "no keep-alive while the supervisor hangs (one may have been on its way)")

	close(release)
	sock.wait(t, time.Now(), 2*watchdog, "WATCHDOG=1 once the supervisor runs again", hasKey("WATCHDOG", "1"))
	reload := sock.wait(t, hung, time.Second, "a STATUS= saying the reload failed", statusContains("reload failed"))
	require.Contains(t, reload.vars["STATUS"], "gave up")
}

func TestClockState(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name          string
		dir           string
		setup         func()
		synced, known bool
	}{
		{"no timesyncd", filepath.Join(dir, "absent"), func() {}, false, false},
		{"timesyncd, not yet", dir, func() {}, false, true},
		{"timesyncd synchronised", dir, func() { require.NoError(t, os.WriteFile(filepath.Join(dir, "synchronized"), nil, 0o644)) }, true, true},
		{"off", "", func() {}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			synced, known := clockState(tt.dir)
			require.Equal(t, tt.synced, synced)
			require.Equal(t, tt.known, known)
		})
	}
}

func TestChangedKeys(t *testing.T) {
	base := config.Default()
	tests := []struct {
		name    string
		edit    func(*config.Config)
		changed []string
		restart []string
	}{
		{"nothing", func(*config.Config) {}, nil, nil},
		{"live only", func(c *config.Config) {
			c.Motion.Sensitivity, c.Media.Encoder.BitrateKbps, c.Log.Level = 0.9, 800, "debug"
		}, []string{"log.level", "motion.sensitivity", "media.encoder.bitrate_kbps"}, nil},
		{"log format: at the next process start", func(c *config.Config) { c.Log.Format = "console" }, []string{"log.format"}, nil},
		{"a mask", func(c *config.Config) { c.Motion.Masks = []config.Rect{{W: 0.1, H: 0.1}} }, []string{"motion.masks"}, nil},
		{"empty and nil masks are the same", func(c *config.Config) { c.Motion.Masks = nil }, nil, nil},
		{"needs a restart", func(c *config.Config) {
			c.Media.Source.Kind, c.Motion.Sensitivity = config.SourceRTSP, 0.2
		}, []string{"motion.sensitivity", "media.source.kind"}, []string{"media.source.kind"}},
		{"a map", func(c *config.Config) { c.Provisioning.Parameters = map[string]string{"a": "b"} },
			[]string{"provisioning.parameters"}, []string{"provisioning.parameters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := config.Default()
			tt.edit(&next)
			changed := changedKeys(base, next)
			require.ElementsMatch(t, tt.changed, changed)
			require.ElementsMatch(t, tt.restart, notLive(changed))
		})
	}
}

// TestWatchdogAfterRestartWithoutFrames: a reload restarts the agent inside the process
// onto a camera that delivers nothing; there is no start-up grace the second time, so the
// keep-alives stop within the watchdog period and systemd restarts the service.
func TestWatchdogAfterRestartWithoutFrames(t *testing.T) {
	const watchdog = 2 * time.Second
	sock := listenNotify(t, watchdog)
	cfg := testConfig(t)
	cfg.Recording.Mode = config.RecordOff
	cfg.Motion.Enabled = false
	h := startReloadHarness(t, cfg)
	start := time.Now()
	ready := sock.wait(t, start, 20*time.Second, "READY=1", hasKey("READY", "1"))
	sock.wait(t, ready.at, watchdog, "WATCHDOG=1", hasKey("WATCHDOG", "1"))

	dead := cfg
	dead.Media.Source.Kind, dead.Media.Source.URL = config.SourceRTSP, "rtsp://127.0.0.1:1/nobody"
	h.write(dead)
	h.hup()
	require.Eventually(t, func() bool { return h.started() == 2 }, 20*time.Second, 20*time.Millisecond)
	restarted := time.Now()
	timer := time.NewTimer(2 * watchdog)
	<-timer.C
	pings := sock.times("WATCHDOG", "1", restarted, time.Now())
	if len(pings) > 0 {
		require.Less(t, pings[len(pings)-1].Sub(restarted), watchdog, "keep-alives stop within the period")
	}
	require.Empty(t, sock.times("WATCHDOG", "1", restarted.Add(watchdog), time.Now()))
	require.Empty(t, sock.times("READY", "1", restarted, time.Now()), "not ready without frames")
}

// TestReloadBeforeReadySaysNotReady: a reload while the camera has not delivered a frame yet
// changes the status but never says READY=1 (that means video flows).
func TestReloadBeforeReadySaysNotReady(t *testing.T) {
	sock := listenNotify(t, 0)
	cfg := testConfig(t)
	cfg.Media.Source.Kind, cfg.Media.Source.URL = config.SourceRTSP, "rtsp://127.0.0.1:1/nobody"
	cfg.Recording.Mode = config.RecordOff
	h := startReloadHarness(t, cfg)
	start := time.Now()
	sock.wait(t, start, 10*time.Second, "a starting STATUS=", statusContains("waiting for the first video frame"))
	next := cfg
	next.Log.Level = "debug"
	h.write(next)
	h.hup()
	h.waitLog("configuration reloaded while running", 10*time.Second)
	sock.wait(t, start, 5*time.Second, "the status after the reload", statusContains("waiting for the first video frame"))
	require.Empty(t, sock.times("READY", "1", start, time.Now()))
	require.Empty(t, sock.times("RELOADING", "1", start, time.Now()))
}

// TestStatusPhases: STATUS= follows the cloud side too — waiting for the clock and
// provisioning while the device is refused, online as its thing once it is allowed and the
// clock is synchronised, offline when the cloud goes away — while READY=1 came with the
// first frames, before any of it.
func TestStatusPhases(t *testing.T) {
	sock := listenNotify(t, 0)
	cloud := startCloudWith(t, localcloud.Options{})
	cfg := cloudConfig(t, cloud)
	cfg.Device.Serial = "cam-phases-1" // not allowed yet: provisioning is refused and retried
	cfg.WebRTC.Enabled = false
	timesync := t.TempDir() // systemd-timesyncd's directory, not synchronised yet
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunService(ctx, ServiceOptions{Options: Options{Config: cfg}, TimesyncDir: timesync}) }()
	defer func() { cancel(); <-done }()

	ready := sock.wait(t, start, 20*time.Second, "READY=1", hasKey("READY", "1"))
	require.Contains(t, ready.vars["STATUS"], "streaming (test)", "video does not wait for the cloud")
	sock.wait(t, start, 20*time.Second, "waiting for clock and provisioning", func(m map[string]string) bool {
		return strings.Contains(m["STATUS"], "waiting for clock") && strings.Contains(m["STATUS"], "provisioning")
	})

	require.NoError(t, os.WriteFile(filepath.Join(timesync, "synchronized"), nil, 0o644))
	require.NoError(t, cloud.Allow(cfg.Device.Serial))
	online := sock.wait(t, start, 30*time.Second, "cloud online", statusContains("cloud online as "))
	require.NotContains(t, online.vars["STATUS"], "waiting for clock")

	closed := time.Now()
	require.NoError(t, cloud.Close())
	sock.wait(t, closed, 30*time.Second, "cloud offline", statusContains("cloud offline"))
}
