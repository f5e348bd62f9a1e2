package agent

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestMotionRecordingRetriedUntilEventEnds: a motion recording that fails (here its
// directory cannot be written: a plain file stands where it should be) is started again
// while its event lasts, and records once the fault is gone. Before, a failed motion
// recording was never retried: the event's video was lost (issue 12, item 1).
func TestMotionRecordingRetriedUntilEventEnds(t *testing.T) {
	cfg := testConfig(t)
	cfg.Media.Source = config.Source{Kind: config.SourceCustom, Format: config.FormatRaw, Width: 320, Height: 180, Framerate: 30,
		Pipeline: "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=180,framerate=30/1"}
	cfg.Recording.Mode = config.RecordMotion
	cfg.Recording.Local.Segment = 30 * time.Second
	cfg.Motion.PreRoll = 2 * time.Second
	cfg.Motion.IdleBitrateKbps, cfg.Motion.IdleFramerate = 0, 0
	require.Empty(t, cfg.Validate())
	core, logs := observer.New(zapcore.InfoLevel)
	a, err := New(Options{Config: cfg, Log: zap.New(core)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			require.NoError(t, <-done)
		}
	}
	defer stop()
	require.Eventually(t, func() bool { return a.Frames() > 30 }, 20*time.Second, 20*time.Millisecond)

	// The recordings directory becomes unusable (a file in its place), motion starts.
	dir := cfg.RecordingsDir()
	require.NoError(t, os.Rename(dir, dir+".away"))
	require.NoError(t, os.WriteFile(dir, []byte("not a directory"), 0o600))
	motionStart(a, time.Second)
	require.Eventually(t, func() bool {
		return logs.FilterMessage("recording failed; starting it again").Len() > 0
	}, 20*time.Second, 20*time.Millisecond, "the failed motion recording is started again")

	// The fault goes away while the event lasts: a later attempt records.
	require.NoError(t, os.Remove(dir))
	require.NoError(t, os.Rename(dir+".away", dir))
	recorded := func() []string {
		var out []string
		for _, f := range a.Recordings() {
			if info, err := os.Stat(f); err == nil && info.Size() > 1024 {
				out = append(out, f)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(recorded()) > 0 }, 30*time.Second, 20*time.Millisecond,
		"a retry records while the event lasts")
	start := a.Frames()
	require.Eventually(t, func() bool { return a.Frames() >= start+60 }, 20*time.Second, 20*time.Millisecond)
	motionEnd(a)
	stop()

	frames := 0
	for _, f := range recorded() {
		frames += probeFrames(t, f)
	}
	t.Logf("%d retries logged, %d frames recorded in %d file(s) after the fault went away",
		logs.FilterMessage("recording failed; starting it again").Len(), frames, len(recorded()))
	require.GreaterOrEqual(t, frames, 60, "the event's video after the fault is recorded")
}
