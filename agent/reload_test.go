package agent

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// reloadHarness runs RunService on a configuration file, with real SIGHUPs as reload
// requests, the way cmd/edgecam's run command does.
type reloadHarness struct {
	t      *testing.T
	path   string
	logs   *observer.ObservedLogs
	level  zap.AtomicLevel
	mu     sync.Mutex
	agents []*Agent
	cancel context.CancelFunc
	done   chan error
}

func startReloadHarness(t *testing.T, cfg config.Config) *reloadHarness {
	t.Helper()
	h := &reloadHarness{t: t, path: filepath.Join(t.TempDir(), "edgecam.yaml"), level: zap.NewAtomicLevelAt(zapcore.InfoLevel)}
	h.write(cfg)
	var core zapcore.Core
	core, h.logs = observer.New(h.level)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reloads := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reloads <- struct{}{}
			}
		}
	}()
	go func() {
		h.done <- RunService(ctx, ServiceOptions{
			Options: Options{Config: cfg, Log: zap.New(core)},
			Load: func() (config.Config, error) {
				l, err := config.Load(config.LoadOptions{Path: h.path, Required: true})
				if err != nil {
					return config.Config{}, err
				}
				return l.Config, nil
			},
			Reloads: reloads, LogLevel: &h.level, TimesyncDir: "-",
			OnAgent: func(a *Agent) { h.mu.Lock(); h.agents = append(h.agents, a); h.mu.Unlock() },
		})
	}()
	t.Cleanup(func() { signal.Stop(hup); h.stop() })
	require.Eventually(t, func() bool { return h.agent() != nil }, 10*time.Second, 10*time.Millisecond)
	return h
}

func (h *reloadHarness) write(cfg config.Config) {
	h.t.Helper()
	y, err := cfg.YAML()
	require.NoError(h.t, err)
	require.NoError(h.t, os.WriteFile(h.path, y, 0o600))
}

// hup sends this process a real SIGHUP, as systemctl reload does to the service.
func (h *reloadHarness) hup() {
	h.t.Helper()
	require.NoError(h.t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
}

func (h *reloadHarness) agent() *Agent {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.agents) == 0 {
		return nil
	}
	return h.agents[len(h.agents)-1]
}

func (h *reloadHarness) started() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.agents)
}

func (h *reloadHarness) stop() {
	if h.cancel != nil {
		h.cancel()
		require.NoError(h.t, <-h.done)
		h.cancel = nil
	}
}

func (h *reloadHarness) waitLog(msg string, within time.Duration) observer.LoggedEntry {
	h.t.Helper()
	var e observer.LoggedEntry
	require.Eventually(h.t, func() bool {
		all := h.logs.FilterMessage(msg).All()
		if len(all) == 0 {
			return false
		}
		e = all[len(all)-1]
		return true
	}, within, 20*time.Millisecond, "log %q", msg)
	return e
}

// recordedFrames decodes every segment in dir with ffprobe and returns the files and the
// total of their frames; a file that does not decode cleanly fails the test.
func recordedFrames(t *testing.T, dir string) ([]string, int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.mkv"))
	require.NoError(t, err)
	sort.Strings(files)
	total := 0
	for _, f := range files {
		cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", f)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "ffprobe %s: %s", f, stderr.String())
		require.Empty(t, stderr.String(), "ffprobe complained about %s", f)
		n, err := strconv.Atoi(strings.TrimSpace(string(out)))
		require.NoError(t, err)
		total += n
	}
	return files, total
}

// TestReloadSIGHUPLive: with a viewer watching and segments being recorded, SIGHUP with a
// new motion sensitivity and encoder bitrate applies both without restarting anything: the
// same agent runs on, the encoder runs at the new bitrate, the detector has the new
// sensitivity, the viewer keeps receiving frames that decode, and every captured frame is in
// a segment that plays.
func TestReloadSIGHUPLive(t *testing.T) {
	cloud := startCloudWith(t, localcloud.Options{AllowSerials: []string{liveThing}})
	cfg := cloudConfig(t, cloud)
	cfg.Device.Serial = liveThing
	cfg.WebRTC.STUN = "none"
	cfg.Recording.Mode = config.RecordContinuous
	cfg.Media.Encoder.BitrateKbps = 1000
	// The viewer's bandwidth estimate caps the bitrate (it starts near 1000 kbit/s); the new
	// bitrate is well below any estimate, so the encoder must run at exactly that.
	cfg.WebRTC.MinBitrateKbps = 100
	cfg.Metrics.Listen = "127.0.0.1:0"
	require.Empty(t, cfg.Validate())
	h := startReloadHarness(t, cfg)
	a := h.agent()
	waitMaster(t, cloud, 20*time.Second)
	v, err := dialViewer(t, cloud, "reload-viewer")
	require.NoError(t, err)
	firstKeyframe(t, v, 15*time.Second)
	require.Eventually(t, func() bool { return a.Source().Bitrate() > 400 }, 10*time.Second, 20*time.Millisecond,
		"someone watches: full quality, or what the viewer's estimate allows")
	require.Eventually(t, func() bool { return len(a.Recordings()) >= 1 }, 10*time.Second, 20*time.Millisecond)

	next := cfg
	next.Motion.Sensitivity = 0.9
	next.Media.Encoder.BitrateKbps = 150
	h.write(next)
	before, _, _ := v.Stats()
	h.hup()
	e := h.waitLog("configuration reloaded while running", 10*time.Second)
	require.ElementsMatch(t, []any{"motion.sensitivity", "media.encoder.bitrate_kbps"}, e.ContextMap()["changed"])
	applied := h.waitLog("motion settings applied", 5*time.Second)
	require.Equal(t, 0.9, applied.ContextMap()["sensitivity"])
	require.Eventually(t, func() bool { return a.Source().Bitrate() == 150 }, 5*time.Second, 20*time.Millisecond,
		"the encoder runs at the new bitrate")
	require.Equal(t, 0.9, a.config().Motion.Sensitivity)

	// The viewer keeps watching: more frames, none broken, still one viewer.
	require.Eventually(t, func() bool { n, _, _ := v.Stats(); return n >= before+45 }, 10*time.Second, 20*time.Millisecond)
	_, broken, _ := v.Stats()
	require.Zero(t, broken)
	require.Equal(t, 1, a.WebRTC().Viewers())
	require.Equal(t, 1, h.started(), "no restart: the same agent")
	require.Empty(t, h.logs.FilterMessage("configuration reloaded: restarting the agent inside the process").All())

	segs := len(a.Recordings())
	require.Eventually(t, func() bool { return len(a.Recordings()) > segs }, 10*time.Second, 20*time.Millisecond,
		"the recorder goes on into a new segment after the reload")
	h.stop()
	files, recorded := recordedFrames(t, cfg.RecordingsDir())
	require.GreaterOrEqual(t, len(files), 2)
	require.EqualValues(t, a.Frames(), recorded, "every captured frame is in a segment: none lost to the reload")
}

// TestReloadRestartsInsideProcess: a key that cannot change live (the segment length)
// restarts the agent inside the process: the first agent's segments are finalised and play,
// the second records, and systemd hears RELOADING=1 then READY=1 once frames flow again.
// log.level changes live; a broken file keeps the running configuration.
func TestReloadRestartsInsideProcess(t *testing.T) {
	sock := listenNotify(t, 0)
	cfg := testConfig(t)
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Motion.Enabled = false
	h := startReloadHarness(t, cfg)
	first := h.agent()
	start := time.Now()
	sock.wait(t, start, 20*time.Second, "READY=1", hasKey("READY", "1"))
	require.Eventually(t, func() bool { return len(first.Recordings()) >= 1 }, 10*time.Second, 20*time.Millisecond)

	// log.level: live.
	debug := cfg
	debug.Log.Level = "debug"
	h.write(debug)
	h.hup()
	h.waitLog("configuration reloaded while running", 10*time.Second)
	require.Equal(t, zapcore.DebugLevel, h.level.Level())
	require.Equal(t, 1, h.started())

	// A file that does not validate: the running configuration stays.
	require.NoError(t, os.WriteFile(h.path, []byte("media:\n  encoder:\n    bitrate_kbps: 10\n"), 0o600))
	h.hup()
	failed := h.waitLog("configuration not reloaded; the running one stays", 10*time.Second)
	require.Contains(t, failed.ContextMap()["error"], "media.encoder.bitrate_kbps")
	sock.wait(t, start, 5*time.Second, "a STATUS= saying the reload failed", statusContains("reload failed"))
	require.Equal(t, 1, h.started())

	// The segment length: restart inside the process.
	next := debug
	next.Recording.Local.Segment = 3 * time.Second
	h.write(next)
	hupAt := time.Now()
	h.hup()
	sock.wait(t, hupAt, 10*time.Second, "RELOADING=1", hasKey("RELOADING", "1"))
	require.Eventually(t, func() bool { return h.started() == 2 }, 20*time.Second, 20*time.Millisecond)
	second := h.agent()
	require.NotSame(t, first, second)
	ready := sock.wait(t, hupAt, 20*time.Second, "READY=1 after the restart", hasKey("READY", "1"))
	require.Contains(t, ready.vars["STATUS"], "streaming")
	require.Greater(t, second.Frames(), uint64(0))
	// The first agent finalised every segment it opened before the second started.
	firstFiles := first.Recordings()
	require.NotEmpty(t, firstFiles)
	for _, f := range firstFiles {
		require.FileExists(t, f)
	}
	require.Eventually(t, func() bool { return len(second.Recordings()) >= 1 }, 15*time.Second, 20*time.Millisecond)
	h.stop()
	_, recorded := recordedFrames(t, cfg.RecordingsDir())
	require.EqualValues(t, first.Frames()+second.Frames(), recorded, "every frame of both agents is in a segment that plays")
}
