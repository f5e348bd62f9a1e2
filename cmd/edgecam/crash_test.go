package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// agentRun is one `edgecam run` process whose log lines are watched.
type agentRun struct {
	cmd      *exec.Cmd
	segments chan string // files of "new segment" lines
	stopped  chan int    // the segment count of the "stopped" line
	done     chan error
	exited   chan struct{}
	tail     []string // the last log lines, for failure messages
}

func startAgent(t *testing.T, cfgPath string) *agentRun {
	t.Helper()
	r := &agentRun{cmd: exec.Command(binary, "run", "--config", cfgPath),
		segments: make(chan string, 1000), stopped: make(chan int, 1), done: make(chan error, 1), exited: make(chan struct{})}
	// The agent takes EDGECAM_* variables for configuration keys: not the tests' own.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDGECAM_LONG_TESTS=") {
			r.cmd.Env = append(r.cmd.Env, kv)
		}
	}
	stderr, err := r.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, r.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if len(r.tail) == 20 {
				r.tail = r.tail[1:]
			}
			r.tail = append(r.tail, sc.Text())
			var line struct {
				Msg      string `json:"msg"`
				File     string `json:"file"`
				Segments int    `json:"segments"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line.Msg {
			case "new segment":
				r.segments <- line.File
			case "stopped":
				r.stopped <- line.Segments
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		close(r.exited)
		r.done <- r.cmd.Wait()
	}()
	return r
}

func (r *agentRun) nextSegment(t *testing.T) string {
	t.Helper()
	select {
	case f := <-r.segments:
		return f
	case <-r.exited:
		t.Fatalf("the agent exited before its next segment:\n%s", strings.Join(r.tail, "\n"))
		return ""
	case <-time.After(30 * time.Second):
		t.Fatal("no new segment within 30 s")
		return ""
	}
}

// TestKill9DuringRecording kills the agent (SIGKILL, nothing can be finalised) at random
// moments while it records, then starts it again: every segment plays to its end without a
// complaint (the one that was open is repaired to its complete frames, or deleted when it
// had none), and the segment count of a run matches the files it wrote.
func TestKill9DuringRecording(t *testing.T) {
	kills := 3
	if os.Getenv("EDGECAM_LONG_TESTS") == "1" {
		kills = 20
	}
	for _, format := range []string{"mkv", "mp4"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "edgecam.yaml")
			require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`state_dir: %s
media:
  source: {kind: test, width: 320, height: 180, framerate: 30}
  encoder: {kind: x264, gop: 1s}
  analysis: {enabled: false}
motion: {enabled: false}
metrics: {listen: ""}
recording:
  mode: continuous
  local: {segment: 2s, format: %s}
`, filepath.Join(dir, "state"), format)), 0o600))
			seed := uint64(time.Now().UnixNano())
			rng := rand.New(rand.NewPCG(seed, 0))
			t.Logf("seed %d", seed)
			for i := range kills {
				r := startAgent(t, cfgPath)
				r.nextSegment(t)
				if rng.IntN(2) == 0 {
					r.nextSegment(t) // sometimes later, with a finished segment behind
				}
				time.Sleep(time.Duration(rng.IntN(2500)) * time.Millisecond)
				require.NoError(t, r.cmd.Process.Signal(syscall.SIGKILL), "kill %d", i)
				<-r.done
				left, _ := filepath.Glob(filepath.Join(dir, "state", "recordings", "*"))
				t.Logf("kill %d: %d files", i, len(left))
			}

			// A last run repairs what the last kill left, records, and stops cleanly.
			r := startAgent(t, cfgPath)
			var written []string
			for range 2 {
				written = append(written, r.nextSegment(t))
			}
			require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
			var counted int
			select {
			case counted = <-r.stopped:
			case <-time.After(30 * time.Second):
				_ = r.cmd.Process.Kill()
				t.Fatal("no clean stop within 30 s of SIGTERM")
			}
			require.NoError(t, <-r.done)
			for len(r.segments) > 0 {
				written = append(written, <-r.segments)
			}
			require.Equal(t, len(written), counted, "the run counts the segments it wrote")

			files, err := filepath.Glob(filepath.Join(dir, "state", "recordings", "*"))
			require.NoError(t, err)
			total := 0
			for _, f := range files {
				require.True(t, strings.HasSuffix(f, "."+format), "only segments are left: %s", f)
				n := ffprobeFrames(t, f)
				require.Positive(t, n, "%s holds frames", f)
				total += n
			}
			for _, f := range written {
				require.FileExists(t, f)
			}
			t.Logf("%d kills: %d segments, %d frames, all play without a complaint", kills, len(files), total)
		})
	}
}
