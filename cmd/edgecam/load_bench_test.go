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

	"github.com/edgecam/edgecam/internal/kvsviewer"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/localcloud"
)

// BenchmarkLiveViewLoad runs the agent binary (edgecam run) on a 720p30 2 Mbit/s RTSP stream
// passed through, with 0, 1, 5 and 10 Go viewers through localcloud's signaling, motion
// analysis off and on, and measures the agent process over 30 s once every viewer has its
// first keyframe: CPU seconds (user + system, from /proc) and peak RSS. Recording is off, so
// that the figures are live view's (and analysis's) alone. Run one combination with e.g.
// -bench 'LiveViewLoad/analysis=off/viewers=1$'; LOAD_BENCH_BINARY runs another build of
// edgecam instead of this tree's (A/B comparisons).
func BenchmarkLiveViewLoad(b *testing.B) {
	for _, analysis := range []bool{false, true} {
		for _, viewers := range []int{0, 1, 5, 10} {
			name := fmt.Sprintf("analysis=%s/viewers=%d", map[bool]string{false: "off", true: "on"}[analysis], viewers)
			b.Run(name, func(b *testing.B) {
				var cpu, rss float64
				n := 0
				for b.Loop() {
					c, r := measureLoad(b, viewers, analysis, 30*time.Second)
					cpu, rss, n = cpu+c, max(rss, r), n+1
				}
				b.ReportMetric(cpu/float64(n), "cpu-s/30s")
				b.ReportMetric(rss, "rss-MB")
			})
		}
	}
}

func measureLoad(b *testing.B, viewers int, analysis bool, window time.Duration) (cpuSeconds, rssMB float64) {
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
	// localcloud's configuration may hold a recording section already (its KVS endpoint):
	// recording is switched off inside it rather than in a second one.
	cfg := cloud.AgentConfig(filepath.Join(dir, "state"))
	if strings.Contains(cfg, "\nrecording:\n") {
		cfg = strings.Replace(cfg, "\nrecording:\n", "\nrecording:\n  mode: \"off\"\n", 1)
	} else {
		cfg += "recording:\n  mode: \"off\"\n"
	}
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
`, thing, srv.URL(), analysis)
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
	for i := range viewers {
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
	pid := agent.Process.Pid
	start := cpuTicks(b, pid)
	peak := 0.0
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		time.Sleep(time.Second)
		peak = max(peak, rss(b, pid))
	}
	ticks := cpuTicks(b, pid) - start
	return float64(ticks) / 100, peak // USER_HZ is 100 on Linux
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
