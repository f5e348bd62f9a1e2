package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/kvsviewer"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/localcloud"
)

// BenchmarkLiveViewLoad runs the agent binary (edgecam run) on a 720p30 2 Mbit/s RTSP stream
// passed through, with 0, 1, 5 and 10 Go viewers through localcloud's signaling, motion
// analysis off and on, and recording off, continuous into localcloud's KVS through kvssink, or
// through the native uploader, and measures the agent process over a window (30 s;
// LOAD_BENCH_WINDOW=10s for a quick try) once every viewer has its first keyframe and KVS
// has persisted a fragment: CPU seconds per 30 s (user + system, from /proc) and peak RSS.
// kvssink and the native uploader record the same stream, so their figures compare side by
// side. Run one combination with e.g.
// -bench 'LiveViewLoad/recording=off/analysis=off/viewers=1$'; LOAD_BENCH_BINARY runs another
// build of edgecam instead of this tree's (A/B comparisons). The kvssink combinations are
// skipped when kvssink is not built (make kvssink).
func BenchmarkLiveViewLoad(b *testing.B) {
	window := 30 * time.Second
	if w := os.Getenv("LOAD_BENCH_WINDOW"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < time.Second {
			b.Fatalf("LOAD_BENCH_WINDOW=%q: want a duration of at least 1s, such as 10s", w)
		}
		window = d
	}
	for _, recording := range []string{"off", config.KVSUploaderKVSSink, config.KVSUploaderNative} {
		for _, analysis := range []bool{false, true} {
			for _, viewers := range []int{0, 1, 5, 10} {
				name := fmt.Sprintf("recording=%s/analysis=%s/viewers=%d", recording, map[bool]string{false: "off", true: "on"}[analysis], viewers)
				b.Run(name, func(b *testing.B) {
					pluginDir := ""
					if recording == config.KVSUploaderKVSSink {
						dir, err := testclip.KVSSinkDir()
						if err != nil {
							b.Skip(err)
						}
						pluginDir = dir
					}
					var cpu, rss float64
					n := 0
					for b.Loop() {
						c, r := measureLoad(b, loadCase{viewers: viewers, analysis: analysis, recording: recording, pluginDir: pluginDir}, window)
						cpu, rss, n = cpu+c, max(rss, r), n+1
					}
					b.ReportMetric(cpu/float64(n), "cpu-s/30s")
					b.ReportMetric(rss, "rss-MB")
				})
			}
		}
	}
}

// loadCase is one combination of BenchmarkLiveViewLoad.
type loadCase struct {
	viewers   int
	analysis  bool
	recording string // off, or the KVS uploader (kvssink, native)
	pluginDir string // kvssink's directory
}

// recordingSection is the agent configuration's recording section for c: it replaces the
// "recording:\n  kvs:\n" head of localcloud's (which holds its KVS endpoint).
func recordingSection(c loadCase) string {
	if c.recording == "off" {
		return "\nrecording:\n  mode: \"off\"\n  kvs:\n"
	}
	return fmt.Sprintf("\nrecording:\n  mode: continuous\n  local:\n    enabled: false\n  kvs:\n    enabled: true\n"+
		"    stream_name: %s\n    uploader: %s\n    plugin_dir: %q\n    startup_timeout: 20s\n", loadStream, c.recording, c.pluginDir)
}

const loadStream = "bench-stream"

func measureLoad(b *testing.B, c loadCase, window time.Duration) (cpuSeconds, rssMB float64) {
	b.StopTimer()
	defer b.StartTimer()
	clipPath, _, err := testclip.Load(testclip.Live720)
	if err != nil {
		b.Fatal(err)
	}
	clip, err := rtsptest.ReadClip(clipPath)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := rtsptest.NewServer(clip, time.Second/30)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()

	dir := b.TempDir()
	const thing = "bench-cam"
	cloud, err := localcloud.Open(localcloud.Options{Dir: filepath.Join(dir, "lc"), AllowSerials: []string{thing}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := cloud.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer cloud.Close()
	// localcloud's configuration holds a recording section already (its KVS endpoint): the
	// recording settings go inside it rather than in a second one.
	cfg := cloud.AgentConfig(filepath.Join(dir, "state"))
	const head = "\nrecording:\n  kvs:\n"
	if !strings.Contains(cfg, head) {
		b.Fatalf("localcloud's agent configuration has no %q section any more: adapt recordingSection", head)
	}
	cfg = strings.Replace(cfg, head, recordingSection(c), 1)
	cfg += fmt.Sprintf(`device:
  serial: %s
log:
  level: warn
metrics:
  listen: ""
media:
  source:
    kind: rtsp
    url: %q
  analysis:
    enabled: %t
`, thing, srv.URL(), c.analysis)
	cfgPath := filepath.Join(dir, "edgecam.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	bin := binary
	if alt := os.Getenv("LOAD_BENCH_BINARY"); alt != "" {
		bin = alt // another build of edgecam, to compare (A/B) on the same machine in the same run
	}
	agent := exec.Command(bin, "run", "--config", cfgPath)
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m, _ := cloud.SignalingPeers(thing); m {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the agent did not become the channel's master")
		}
		time.Sleep(50 * time.Millisecond)
	}
	vc, err := cloud.ViewerConfig()
	if err != nil {
		b.Fatal(err)
	}
	for i := range c.viewers {
		dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
		v, err := kvsviewer.Dial(dctx, kvsviewer.Options{Region: vc.Region, ControlPlane: vc.ControlPlaneURL, Channel: thing,
			AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey, ClientID: fmt.Sprintf("load-%d", i), IncludeLoopback: true})
		if err != nil {
			dcancel()
			b.Fatal(err)
		}
		if _, _, err := v.FirstKeyframe(dctx); err != nil {
			dcancel()
			b.Fatal(err)
		}
		dcancel()
		defer v.Close()
		go func() { // keep draining frames, as a player would
			for range v.Frames() {
			}
		}()
	}
	if c.recording != "off" { // measure once KVS holds a fragment: the uploader is running
		deadline := time.Now().Add(60 * time.Second)
		for {
			st, err := cloud.KVSStreamStats(loadStream)
			if err != nil {
				b.Fatal(err)
			}
			if st.FragmentsPersisted > 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("recording through %s: KVS persisted no fragment within 60 s", c.recording)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	pid := agent.Process.Pid
	start, began := cpuTicks(b, pid), time.Now()
	peak := 0.0
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		time.Sleep(time.Second)
		peak = max(peak, rss(b, pid))
	}
	ticks, elapsed := cpuTicks(b, pid)-start, time.Since(began)
	if c.recording != "off" {
		if st, err := cloud.KVSStreamStats(loadStream); err == nil && len(st.Errors) > 0 {
			b.Fatalf("recording through %s: KVS acknowledged errors %v", c.recording, st.Errors)
		}
	}
	// USER_HZ is 100 on Linux; the figure is per 30 s whatever the window.
	return float64(ticks) / 100 * float64(30*time.Second) / float64(elapsed), peak
}

// cpuTicks returns utime+stime of a process from /proc/<pid>/stat.
func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return utime + stime
}

// rss returns VmRSS of a process in MB.
func rss(b *testing.B, pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(sc.Text())[1], 64)
			return kb / 1024
		}
	}
	return 0
}
