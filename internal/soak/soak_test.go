package soak

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/stretchr/testify/require"
)

// TestSoakSmoke runs the whole soak for a minute (samples every 5 s, viewers every 15 s,
// credentials living 30 s, localcloud down 5 s at 35 s) on the real agent binary, and
// checks that it writes sane samples, plot and verdict. The growth figures of one minute
// mean nothing (warm-up), so the verdict is not required to pass; what the agent must do
// in a minute is. About 90 s with the build: EDGECAM_LONG_TESTS=1.
func TestSoakSmoke(t *testing.T) {
	if os.Getenv("EDGECAM_LONG_TESTS") != "1" {
		t.Skip("a one-minute soak of the agent binary: set EDGECAM_LONG_TESTS=1")
	}
	root, err := testclip.Root()
	require.NoError(t, err)
	clip, _ := testclip.Path(t, testclip.Ball)
	bin := filepath.Join(t.TempDir(), "edgecam")
	build := exec.Command("go", "build", "-o", bin, "./cmd/edgecam")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	var progress bytes.Buffer
	res, err := Run(context.Background(), Options{Agent: bin, Clip: clip, Out: t.TempDir(), Duration: time.Minute,
		Interval: 5 * time.Second, ViewerEvery: 15 * time.Second, CredentialLifetime: 30 * time.Second,
		RefreshBefore: 10 * time.Second, RestartAt: 35 * time.Second, RestartDown: 5 * time.Second, Progress: &progress})
	require.NoError(t, err)
	t.Logf("progress:\n%s\nverdict:\n%s", progress.String(), res.Verdict)
	r := res.Run
	require.Empty(t, r.AgentExit, "the agent runs throughout")
	require.Empty(t, r.Shutdown, "and stops cleanly on SIGTERM")

	// samples.csv: a row every 5 s from the start, the agent's figures read.
	data, err := os.ReadFile(res.CSV)
	require.NoError(t, err)
	samples, err := ReadCSV(bytes.NewReader(data))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(samples), 10)
	require.LessOrEqual(t, len(samples), 13)
	final := func(name string) float64 { return last(samples, col(name)) } // the last value read
	require.Greater(t, final("rss_mb"), 10.0)
	require.Greater(t, final("goroutines"), 10.0)
	require.Greater(t, final("open_fds"), 5.0)
	require.Greater(t, final("threads"), 1.0)
	require.GreaterOrEqual(t, final("segments"), 1.0, "local segments recorded")
	require.Greater(t, final("kvs_fragments"), 0.0, "fragments uploaded through the spool")
	require.Greater(t, final("motion_events"), 0.0, "the ball's motion detected")
	require.NotZero(t, r.RestartUp, "localcloud restarted")

	// Every viewer got video (or the run ended while it waited), at least one did.
	withVideo := 0
	for _, v := range r.Viewers {
		require.GreaterOrEqual(t, v.Video, time.Duration(0), "viewer %s: %s", v.ID, v.Err)
		withVideo++
	}
	require.Positive(t, withVideo)

	// soak.svg: well-formed, every panel.
	svg, err := os.ReadFile(res.SVG)
	require.NoError(t, err)
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		if _, err := dec.Token(); err != nil {
			require.ErrorContains(t, err, "EOF")
			break
		}
	}
	for _, c := range columns {
		require.Contains(t, string(svg), ">"+c.name)
	}

	// verdict.txt: the verdict, the growth figures and the load.
	text, err := os.ReadFile(res.VerdictFile)
	require.NoError(t, err)
	require.Contains(t, string(text), res.Verdict.String())
	require.True(t, strings.Contains(string(text), "\nPASS\n") || strings.Contains(string(text), "\nFAIL\n"))
	for _, m := range []string{"rss_mb", "goroutines", "open_fds", "load average"} {
		require.Contains(t, string(text), m)
	}
	for _, f := range res.Verdict.Failures {
		require.NotContains(t, f, "never got video")
		require.NotContains(t, f, "exited")
	}
}
