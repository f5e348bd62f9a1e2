package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/kvsviewer"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/localcloud"
)

// analysisCase is one way of running motion analysis in BenchmarkAnalysisCost.
type analysisCase struct {
	name string
	// yaml is the media.analysis section's body.
	yaml string
	// source is more of the media.source section (e.g. rtsp_client: go).
	source string
	// sub is the substream's clip ("" for none).
	sub string
	fps int
}

// BenchmarkAnalysisCost measures what motion analysis costs the agent (edgecam run) on a
// 720p30 2 Mbit/s RTSP camera passed through to one Go viewer, recording off: analysis
// off, on the main stream (every frame decoded in software), the main stream's keyframes
// only (each through GStreamer's capture pipeline, or read by the Go RTSP client and
// decoded from the hub: main-go*), and on a low-resolution substream of the same scene served by a second RTSP server
// (320x180 and 640x360 at 15 fps, and 320x180 at the analysis rate, 5 fps;
// media.analysis.source). The cases run interleaved in
// each iteration (-benchtime=3x: three rounds), so that the machine's load falls on all of
// them alike. Reported per case: CPU seconds per 30 s (user + system, from /proc) and peak
// RSS. ANALYSIS_BENCH_WINDOW=10s shortens the window for a quick try;
// ANALYSIS_BENCH_CASES=off,sub-320x180-15fps runs only those cases; ANALYSIS_BENCH_SMAPS=1
// prints the agent's largest mappings by RSS after each case (where the memory goes);
// ANALYSIS_BENCH_PROFILE=dir writes each agent's Go CPU profile there (--cpu-profile).
func BenchmarkAnalysisCost(b *testing.B) {
	window := 30 * time.Second
	if w := os.Getenv("ANALYSIS_BENCH_WINDOW"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < time.Second {
			b.Fatalf("ANALYSIS_BENCH_WINDOW=%q: want a duration of at least 1s, such as 10s", w)
		}
		window = d
	}
	b.StopTimer()
	mainClip, _, err := testclip.Load(testclip.Live720)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	sub320 := scaledClip(b, mainClip, filepath.Join(dir, "sub-320x180-15fps.mp4"), 320, 180, 15, 300)
	sub640 := scaledClip(b, mainClip, filepath.Join(dir, "sub-640x360-15fps.mp4"), 640, 360, 15, 800)
	sub320at5 := scaledClip(b, mainClip, filepath.Join(dir, "sub-320x180-5fps.mp4"), 320, 180, 5, 150)
	cases := []analysisCase{
		{name: "off", yaml: "enabled: false"},
		{name: "main", yaml: "enabled: true"},
		{name: "main-keyframes", yaml: "enabled: true\n    keyframes_only: true"},
		// The main stream read by the Go RTSP client, its access units decoded from the hub.
		{name: "main-go", yaml: "enabled: true", source: "rtsp_client: go"},
		{name: "main-go-keyframes", yaml: "enabled: true\n    keyframes_only: true", source: "rtsp_client: go"},
		{name: "main-go-keyframes-openh264", yaml: "enabled: true\n    keyframes_only: true\n    decoder: openh264", source: "rtsp_client: go"},
		{name: "sub-320x180-15fps", yaml: "enabled: true", sub: sub320, fps: 15},
		{name: "sub-640x360-15fps", yaml: "enabled: true", sub: sub640, fps: 15},
		{name: "sub-320x180-5fps", yaml: "enabled: true", sub: sub320at5, fps: 5},
	}
	if only := os.Getenv("ANALYSIS_BENCH_CASES"); only != "" {
		var keep []analysisCase
		for _, c := range cases {
			if slices.Contains(strings.Split(only, ","), c.name) {
				keep = append(keep, c)
			}
		}
		if len(keep) == 0 {
			b.Fatalf("ANALYSIS_BENCH_CASES=%q names no case", only)
		}
		cases = keep
	}
	cpu := make([]float64, len(cases))
	peak := make([]float64, len(cases))
	fps := make([]float64, len(cases))
	n := 0
	b.StartTimer()
	for b.Loop() {
		for i, c := range cases {
			m := measureAnalysis(b, mainClip, c, window)
			b.Logf("round %d %s: %.2f CPU-s per 30 s, %.0f MB, %.2f analysis fps", n+1, cases[i].name, m.cpu, m.rss, m.fps)
			cpu[i] += m.cpu
			peak[i] = max(peak[i], m.rss)
			fps[i] += m.fps
		}
		n++
	}
	for i, c := range cases {
		b.ReportMetric(cpu[i]/float64(n), c.name+"-cpu-s/30s")
		b.ReportMetric(peak[i], c.name+"-rss-MB")
		if fps[i] > 0 {
			b.ReportMetric(fps[i]/float64(n), c.name+"-analysis-fps")
		}
	}
}

// scaledClip makes a lower-resolution copy of a clip at another frame rate, as a camera's
// substream of the same scene (x264, no B-frames, 2 s GOP).
func scaledClip(b *testing.B, src, dst string, w, h, fps, kbps int) string {
	b.Helper()
	out, err := exec.Command("gst-launch-1.0", "-q", "-e", "filesrc", "location="+src, "!", "qtdemux", "!", "h264parse", "!", "avdec_h264", "!",
		"videorate", "!", fmt.Sprintf("video/x-raw,framerate=%d/1", fps), "!", "videoscale", "!", fmt.Sprintf("video/x-raw,width=%d,height=%d", w, h), "!",
		"x264enc", "bframes=0", fmt.Sprintf("key-int-max=%d", 2*fps), fmt.Sprintf("bitrate=%d", kbps), "speed-preset=veryfast", "option-string=scenecut=0", "!",
		"video/x-h264,profile=high", "!", "h264parse", "!", "mp4mux", "!", "filesink", "location="+dst).CombinedOutput()
	if err != nil {
		b.Fatalf("substream clip %s: %v\n%s", dst, err, out)
	}
	return dst
}

// serveClip serves a clip over RTSP until the returned stop.
func serveClip(b *testing.B, path string, fps int) (*rtsptest.Server, func()) {
	b.Helper()
	clip, err := rtsptest.ReadClip(path)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := rtsptest.NewServer(clip, time.Second/time.Duration(fps))
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	return srv, srv.Stop
}

// analysisFigures are one case's measurements: CPU seconds per 30 s, peak RSS in MB, and
// analysis frames per second (from the status message's motion.analysis.frames, which
// counts only a source of its own: 0 for the capture pipeline's analysis branch).
type analysisFigures struct{ cpu, rss, fps float64 }

// statusFrames records motion.analysis.frames from each status message, with when it came.
type statusFrames struct {
	mu   sync.Mutex
	at   []time.Time
	seen []uint64
}

func (s *statusFrames) observe(_ string, payload []byte) {
	var st struct {
		Motion struct {
			Analysis *struct {
				Frames uint64 `json:"frames"`
			} `json:"analysis"`
		} `json:"motion"`
	}
	if json.Unmarshal(payload, &st) != nil || st.Motion.Analysis == nil || st.Motion.Analysis.Frames == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = append(s.at, time.Now())
	s.seen = append(s.seen, st.Motion.Analysis.Frames)
}

// rate returns the analysis frames per second between the first and last status messages
// received within [from, to] (0 when fewer than two).
func (s *statusFrames) rate(from, to time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := -1, -1
	for i, t := range s.at {
		if t.Before(from) || t.After(to) {
			continue
		}
		if first < 0 {
			first = i
		}
		last = i
	}
	if first < 0 || last == first {
		return 0
	}
	return float64(s.seen[last]-s.seen[first]) / s.at[last].Sub(s.at[first]).Seconds()
}

// measureAnalysis runs the agent with one viewer and analysis as c says, and measures it
// over window after the viewer's first keyframe and a few seconds more for analysis to run.
func measureAnalysis(b *testing.B, mainClip string, c analysisCase, window time.Duration) analysisFigures {
	b.StopTimer()
	defer b.StartTimer()
	srv, stop := serveClip(b, mainClip, 30)
	defer stop()
	analysis := c.yaml
	if c.sub != "" {
		sub, stopSub := serveClip(b, c.sub, c.fps)
		defer stopSub()
		analysis += fmt.Sprintf("\n    source: %q", sub.URL())
	}

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
	cfg := cloud.AgentConfig(filepath.Join(dir, "state"))
	const head = "\nrecording:\n"
	if !strings.Contains(cfg, head) {
		b.Fatalf("localcloud's agent configuration has no %q section any more: adapt this benchmark", head)
	}
	cfg = strings.Replace(cfg, head, head+"  mode: \"off\"\n", 1)
	frames := &statusFrames{}
	if err := cloud.Observe("edgecam/"+thing+"/status", frames.observe); err != nil {
		b.Fatal(err)
	}
	cfg += fmt.Sprintf(`device:
  serial: %s
log:
  level: warn
metrics:
  listen: ""
telemetry:
  interval: 5s
media:
  source:
    kind: rtsp
    url: %q
    %s
  analysis:
    %s
`, thing, srv.URL(), c.source, analysis)
	cfgPath := filepath.Join(dir, "edgecam.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	args := []string{"run", "--config", cfgPath}
	if dir := os.Getenv("ANALYSIS_BENCH_PROFILE"); dir != "" {
		args = append(args, "--cpu-profile", filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", c.name, time.Now().Unix())))
	}
	agent := exec.Command(binary, args...)
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
	dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
	v, err := kvsviewer.Dial(dctx, kvsviewer.Options{Region: vc.Region, ControlPlane: vc.ControlPlaneURL, Channel: thing,
		AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey, ClientID: "analysis-bench", IncludeLoopback: true})
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
	time.Sleep(3 * time.Second) // the analysis source's first frames

	pid := agent.Process.Pid
	start, began := cpuTicks(b, pid), time.Now()
	peak := 0.0
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		time.Sleep(time.Second)
		peak = max(peak, rss(b, pid))
	}
	ticks, elapsed := cpuTicks(b, pid)-start, time.Since(began)
	if os.Getenv("ANALYSIS_BENCH_SMAPS") != "" {
		logMappings(b, pid, c.name)
	}
	// USER_HZ is 100 on Linux; the figure is per 30 s whatever the window.
	return analysisFigures{
		cpu: float64(ticks) / 100 * float64(30*time.Second) / float64(elapsed),
		rss: peak,
		fps: frames.rate(began, time.Now()),
	}
}

// logMappings logs the process's largest mappings by resident size (where the RSS goes).
func logMappings(b *testing.B, pid int, name string) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		b.Fatal(err)
	}
	sizes := map[string]int{}
	cur := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			cur = "[anon]"
			if len(f) >= 6 {
				cur = f[5]
			}
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.Atoi(f[1])
			sizes[cur] += kb
		}
	}
	type m struct {
		name string
		kb   int
	}
	var all []m
	for k, v := range sizes {
		all = append(all, m{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].kb > all[j].kb })
	var out strings.Builder
	for _, x := range all[:min(len(all), 25)] {
		fmt.Fprintf(&out, "\n  %6d KB %s", x.kb, x.name)
	}
	fmt.Fprintf(os.Stderr, "%s: largest mappings by RSS:%s\n", name, out.String())
}
