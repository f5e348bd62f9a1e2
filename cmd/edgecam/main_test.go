package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/stretchr/testify/require"
)

// binary is the edgecam command built once for the tests that need a real process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgecam-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "edgecam")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = execute(context.Background(), args, &o, &e)
	return o.String(), e.String(), code
}

func TestVersionPrintsGStreamer(t *testing.T) {
	out, _, code := run(t, "version")
	require.Equal(t, exitOK, code)
	require.Regexp(t, `(?m)^gstreamer: GStreamer 1\.\d+\.\d+$`, out)
	require.Regexp(t, `(?m)^go: +go1\.`, out)
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("log:\n  level: loud\nmedia:\n  encoder:\n    bitrate_kbps: 10\n  source:\n    kindd: test\n"), 0o600))
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("log:\n  level: debug\n"), 0o600))

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  []string
	}{
		{"three mistakes", []string{"config", "validate", "--config", bad}, exitConfig, nil,
			[]string{"has 3 problems", "log.level:", "media.encoder.bitrate_kbps:", "media.source.kindd: unknown key (did you mean media.source.kind?)"}},
		{"valid file", []string{"config", "validate", "--config", good}, exitOK, []string{"configuration OK: " + good}, nil},
		{"missing named file", []string{"config", "validate", "--config", filepath.Join(dir, "none.yaml")}, exitConfig, nil, []string{"does not exist"}},
		{"bad flag value", []string{"config", "validate", "--config", good, "--log-level", "chatty"}, exitConfig, nil, []string{`log.level: "chatty" is not allowed`}},
		{"print shows file values", []string{"config", "print", "--config", good}, exitOK, []string{"# from " + good, "level: debug", "gop: 2s"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, tt.args...)
			require.Equal(t, tt.wantCode, code, "stdout: %s\nstderr: %s", out, errOut)
			for _, w := range tt.wantOut {
				require.Contains(t, out, w)
			}
			for _, w := range tt.wantErr {
				require.Contains(t, errOut, w)
			}
		})
	}
}

// TestCPUProfileOfAFailingCommand: the profile is written even when the command fails.
func TestCPUProfileOfAFailingCommand(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "cpu.pprof")
	_, _, code := run(t, "--cpu-profile", prof, "config", "validate", "--config", filepath.Join(dir, "none.yaml"))
	require.Equal(t, exitConfig, code)
	data, err := os.ReadFile(prof)
	require.NoError(t, err)
	require.NotEmpty(t, data, "pprof wrote nothing: the profile was never stopped")
	require.Equal(t, []byte{0x1f, 0x8b}, data[:2], "a pprof profile is gzipped")
}

func TestDryRunRejectsMissingVideo(t *testing.T) {
	_, errOut, code := run(t, "dry-run", "--video", "/nonexistent.mp4", "--out", t.TempDir())
	require.Equal(t, exitConfig, code)
	require.Contains(t, errOut, "/nonexistent.mp4")
}

// ffprobeFrames decodes a file with ffprobe and returns its frame count; any decoding
// complaint fails the test.
func ffprobeFrames(t *testing.T, file string) int {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "ffprobe %s (install it with scripts/install-deps.sh): %s", file, stderr.String())
	require.Empty(t, stderr.String(), "ffprobe complained about %s", file)
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	require.NoError(t, err, "ffprobe output %q", out)
	return n
}

var capturedRE = regexp.MustCompile(`dry-run: (\d+) frames captured, (\d+) segments`)

// checkRecordings decodes every segment and compares the total with what was captured.
func checkRecordings(t *testing.T, stdout, dir string) (captured, recorded int) {
	t.Helper()
	m := capturedRE.FindStringSubmatch(stdout)
	require.NotNil(t, m, "summary line missing from:\n%s", stdout)
	captured, _ = strconv.Atoi(m[1])
	files, err := filepath.Glob(filepath.Join(dir, "recordings", "*.mkv"))
	require.NoError(t, err)
	require.Equal(t, m[2], strconv.Itoa(len(files)))
	for _, f := range files {
		recorded += ffprobeFrames(t, f)
	}
	return captured, recorded
}

func TestDryRunRecordsWhatWasPlayed(t *testing.T) {
	clip, side := testclip.Path(t, testclip.Ball)
	out := t.TempDir()
	cmd := exec.Command(binary, "dry-run", "--video", clip, "--duration", "25s", "--out", out)
	stdout, err := cmd.Output()
	require.NoError(t, err, "dry-run failed:\n%s", stdout)
	require.Contains(t, string(stdout), "recordings:  "+filepath.Join(out, "recordings"))
	require.Contains(t, string(stdout), "device provisioned through localcloud as", "dry-run provisions before media starts")
	require.FileExists(t, filepath.Join(out, "state", "identity", "identity.json"))

	captured, recorded := checkRecordings(t, string(stdout), out)
	gop := int(side.GOPSeconds) * side.FPS
	require.InDelta(t, 25*side.FPS, recorded, float64(gop), "25 s at %d fps, ±1 GOP", side.FPS)
	require.Equal(t, captured, recorded, "every captured frame is in a segment")
}

func TestDryRunSIGTERMLeavesPlayableSegments(t *testing.T) {
	clip, _ := testclip.Path(t, testclip.Ball)
	out := t.TempDir()
	cmd := exec.Command(binary, "dry-run", "--video", clip, "--out", out)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	require.NoError(t, cmd.Start())
	time.Sleep(13 * time.Second) // mid-way through the second segment
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "exit after SIGTERM:\n%s", stdout.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("dry-run did not stop within 30 s of SIGTERM")
	}
	captured, recorded := checkRecordings(t, stdout.String(), out)
	require.Equal(t, captured, recorded)
	require.Greater(t, recorded, 150, "the second segment holds frames too")
}

func TestDevicesCommand(t *testing.T) {
	out, _, code := run(t, "devices")
	require.Equal(t, exitOK, code)
	if _, err := os.Stat("/dev/video0"); err != nil {
		require.Contains(t, out, "No cameras found")
	} else {
		require.Contains(t, out, "config: media.source:")
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

var segmentNameRE = regexp.MustCompile(`(\d{8}T\d{6}\.\d{3}Z)`)

var motionLineRE = regexp.MustCompile(`motion (start|end) \(broker\): start (\d\d:\d\d:\d\d\.\d{3})(?:, end (\d\d:\d\d:\d\d\.\d{3}))?`)

// TestDryRunMotionMode plays the 30 s clip (motion at 5-9 s and 16-21 s) in motion mode:
// the motion events reach the MQTT broker, every event is recorded from its pre-roll to its
// end, each recording starts on a keyframe, and nothing else is recorded.
func TestDryRunMotionMode(t *testing.T) {
	clip, side := testclip.Path(t, testclip.Ball)
	out := t.TempDir()
	cfgPath := filepath.Join(out, "edgecam.yaml")
	const preRoll, gop = 2 * time.Second, 2 * time.Second
	require.NoError(t, os.WriteFile(cfgPath, []byte("motion:\n  pre_roll: 2s\n  post_roll: 2s\n  event_gap: 2s\n"), 0o600))
	cmd := exec.Command(binary, "dry-run", "--config", cfgPath, "--video", clip, "--duration", "27s", "--out", out, "--recording", "motion")
	stdout, err := cmd.Output()
	require.NoError(t, err, "dry-run failed:\n%s", stdout)
	text := string(stdout)
	day := time.Now().UTC()
	clock := func(hms string) time.Time {
		c, err := time.Parse("15:04:05.000", hms)
		require.NoError(t, err)
		return time.Date(day.Year(), day.Month(), day.Day(), c.Hour(), c.Minute(), c.Second(), c.Nanosecond(), time.UTC)
	}
	type span struct{ from, to time.Time }
	var events []span
	for _, m := range motionLineRE.FindAllStringSubmatch(text, -1) {
		if m[1] == "end" {
			events = append(events, span{clock(m[2]), clock(m[3])})
		}
	}
	require.Len(t, events, len(side.Motion), "one event per labelled interval (event_gap 2s keeps them apart):\n%s", text)
	// Map clip time to wall time through the first event: the others must start where the labels say.
	clipStart := events[0].from.Add(-seconds(side.Motion[0].Start))
	for i, e := range events {
		want := clipStart.Add(seconds(side.Motion[i].Start))
		require.WithinDuration(t, want, e.from, 600*time.Millisecond, "event %d starts %v, label says %v", i, e.from.Format("15:04:05.000"), want.Format("15:04:05.000"))
	}

	files, err := filepath.Glob(filepath.Join(out, "recordings", "*.mkv"))
	require.NoError(t, err)
	var recs []span
	for _, f := range files {
		m := segmentNameRE.FindStringSubmatch(filepath.Base(f))
		require.NotNil(t, m, f)
		began, err := time.Parse("20060102T150405.000Z", m[1])
		require.NoError(t, err)
		n := ffprobeFrames(t, f)
		recs = append(recs, span{began, began.Add(time.Duration(n) * time.Second / time.Duration(side.FPS))})
		// The first frame is a keyframe (the recording starts from the hub's GOP-aligned ring).
		probe := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#1",
			"-show_entries", "frame=pict_type,key_frame", "-of", "csv=p=0", f)
		first, err := probe.Output()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(strings.TrimSpace(string(first)), "1,I"), "%s starts with %q", f, first)
	}
	// Consecutive segments of one recording make one span.
	sort.Slice(recs, func(i, j int) bool { return recs[i].from.Before(recs[j].from) })
	var spans []span
	for _, r := range recs {
		if n := len(spans); n > 0 && !r.from.After(spans[n-1].to.Add(300*time.Millisecond)) {
			if r.to.After(spans[n-1].to) {
				spans[n-1].to = r.to
			}
			continue
		}
		spans = append(spans, r)
	}
	for _, e := range events {
		ok := false
		for _, s := range spans {
			// From the pre-roll (the keyframe at or before it) to the event's end.
			if !s.from.After(e.from.Add(-preRoll+200*time.Millisecond)) && !s.to.Before(e.to.Add(-300*time.Millisecond)) {
				ok = true
			}
		}
		require.True(t, ok, "event %v–%v not recorded from its pre-roll to its end: %v", e.from.Format("15:04:05.000"), e.to.Format("15:04:05.000"), spans)
	}
	var total time.Duration
	for _, s := range spans {
		total += s.to.Sub(s.from)
		// Every recording begins at an event's pre-roll, on the keyframe at or before it.
		begins := false
		for _, e := range events {
			start := e.from.Add(-preRoll)
			if !s.from.After(start.Add(200*time.Millisecond)) && s.from.After(start.Add(-gop-300*time.Millisecond)) {
				begins = true
			}
		}
		require.True(t, begins, "recording %v–%v does not begin at an event's pre-roll", s.from, s.to)
	}
	// Nothing is recorded away from the labels: each recording lies between a label's pre-roll keyframe and
	// its end plus post-roll, plus the detector's settling (a stopped object is absorbed after
	// motion.DefaultStationaryFrames analysis frames, 3 s at 5 fps) and a GOP of segment slack.
	const settle = 3*time.Second + gop
	for _, s := range spans {
		inside := false
		for i, a := range side.Motion {
			for _, b := range side.Motion[i:] {
				lo := clipStart.Add(seconds(a.Start) - preRoll - gop - 300*time.Millisecond)
				hi := clipStart.Add(seconds(b.End) + 2*time.Second + settle)
				if !s.from.Before(lo) && !s.to.After(hi) {
					inside = true
				}
			}
		}
		require.True(t, inside, "recording %v–%v is not around a labelled interval %v", s.from.Format("15:04:05.000"), s.to.Format("15:04:05.000"), side.Motion)
	}
	for _, s := range spans {
		t.Logf("recording clip %.1f s – %.1f s", s.from.Sub(clipStart).Seconds(), s.to.Sub(clipStart).Seconds())
	}
	t.Logf("events %d, labels %v, %s of 27 s recorded", len(events), side.Motion, total)
	require.LessOrEqual(t, len(spans), len(events))
}
