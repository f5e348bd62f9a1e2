package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
// skipped when kvssink is not built (make kvssink). The agent is the device build
// (-tags nolocalcloud, as make deb builds it). pss-MB is the proportional set size (shared
// libraries' pages count by their share). LOAD_BENCH_DUMP=dir writes the agent's smaps,
// smaps_rollup, status, heap profile and goroutines at the end of each window into dir (the
// metrics endpoint is on then, with pprof, which costs memory of its own).
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
					var cpu, rss, pss float64
					n := 0
					for b.Loop() {
						m := measureLoad(b, loadCase{viewers: viewers, analysis: analysis, recording: recording, pluginDir: pluginDir,
							dump: dumpDir(b, name)}, window)
						cpu, rss, pss, n = cpu+m.cpuSeconds, max(rss, m.rssMB), max(pss, m.pssMB), n+1
					}
					b.ReportMetric(cpu/float64(n), "cpu-s/30s")
					b.ReportMetric(rss, "rss-MB")
					b.ReportMetric(pss, "pss-MB")
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
	dump      string // where to write the agent's memory maps and heap profile at the window's end; "" for none
}

// dumpDir is where the combination name writes its memory dump (LOAD_BENCH_DUMP), or "".
func dumpDir(b *testing.B, name string) string {
	root := os.Getenv("LOAD_BENCH_DUMP")
	if root == "" {
		return ""
	}
	dir := filepath.Join(root, strings.NewReplacer("/", "_", "=", "-").Replace(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatalf("LOAD_BENCH_DUMP: %v", err)
	}
	return dir
}

// loadFigures are what measureLoad measures of the agent.
type loadFigures struct {
	cpuSeconds float64 // user + system per 30 s
	rssMB      float64 // peak VmRSS
	pssMB      float64 // peak proportional set size: shared file pages count by share
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

func measureLoad(b *testing.B, c loadCase, window time.Duration) loadFigures {
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
  listen: %q
  pprof: %t
media:
  source:
    kind: rtsp
    url: %q
  analysis:
    enabled: %t
`, thing, metricsListen(c), c.dump != "", srv.URL(), c.analysis)
	cfgPath := filepath.Join(dir, "edgecam.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	bin := deviceBinary(b)
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
	var f loadFigures
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		time.Sleep(time.Second)
		f.rssMB = max(f.rssMB, rss(b, pid))
		f.pssMB = max(f.pssMB, pss(b, pid))
	}
	ticks, elapsed := cpuTicks(b, pid)-start, time.Since(began)
	if c.dump != "" {
		dumpMemory(b, pid, metricsListen(c), c.dump)
	}
	if c.recording != "off" {
		if st, err := cloud.KVSStreamStats(loadStream); err == nil && len(st.Errors) > 0 {
			b.Fatalf("recording through %s: KVS acknowledged errors %v", c.recording, st.Errors)
		}
	}
	// USER_HZ is 100 on Linux; the figure is per 30 s whatever the window.
	f.cpuSeconds = float64(ticks) / 100 * float64(30*time.Second) / float64(elapsed)
	return f
}

// metricsListen is the agent's metrics.listen for c: off unless its memory is dumped (the
// endpoint serves the heap profile then, and costs memory of its own).
func metricsListen(c loadCase) string {
	if c.dump == "" {
		return ""
	}
	return "127.0.0.1:19464"
}

// dumpMemory writes the agent's /proc smaps, smaps_rollup and status and a heap profile
// (with Go's MemStats, debug=1) into dir.
func dumpMemory(b *testing.B, pid int, listen, dir string) {
	for _, name := range []string{"smaps", "smaps_rollup", "status"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for file, query := range map[string]string{"heap.pb.gz": "", "heap.txt": "?debug=1", "goroutines.txt": "goroutine?debug=1"} {
		path := "heap" + query
		if strings.HasPrefix(query, "goroutine") {
			path = query
		}
		resp, err := http.Get("http://" + listen + "/debug/pprof/" + path)
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

var (
	deviceOnce sync.Once
	devicePath string
	deviceErr  error
)

// deviceBinary is edgecam built as the device package builds it (packaging/build-deb.sh:
// -tags nolocalcloud, stripped), which is what runs on a camera; built once per test binary
// next to the tests' own build.
func deviceBinary(b *testing.B) string {
	deviceOnce.Do(func() {
		devicePath = filepath.Join(filepath.Dir(binary), "edgecam-device")
		args := []string{"build", "-trimpath", "-tags", "nolocalcloud", "-ldflags", "-s -w", "-o", devicePath}
		if raceEnabled {
			args = append(args, "-race")
		}
		if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
			deviceErr = fmt.Errorf("go build -tags nolocalcloud: %w\n%s", err, out)
		}
	})
	if deviceErr != nil {
		b.Fatal(deviceErr)
	}
	return devicePath
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

// pss returns the proportional set size of a process in MB (smaps_rollup): file pages shared
// with other processes count by their share.
func pss(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "Pss:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
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
