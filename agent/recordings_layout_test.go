package agent

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestDefaultRecordingsBoundedToHalfTheirFileSystem: with the default configuration (no
// max_bytes), local recordings are bounded to half of the file system they are on, and the
// log says where they go and how much room they have (issue 12, item 5: the default layout
// filled a 32 GB root file system in a day).
func TestDefaultRecordingsBoundedToHalfTheirFileSystem(t *testing.T) {
	def := config.Default().Recording.Local
	require.Zero(t, def.MaxBytes, "no fixed size by default")
	require.Equal(t, 50, def.MaxSharePercent, "half of the file system by default")

	cfg := testConfig(t)
	cfg.Motion.Enabled = false
	core, logs := observer.New(zapcore.InfoLevel)
	a, err := New(Options{Config: cfg, Log: zap.New(core)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return logs.FilterMessage("recordings").Len() > 0 }, 20*time.Second, 10*time.Millisecond,
		"the agent logs where recordings go")
	cancel()
	require.NoError(t, <-done)

	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(cfg.RecordingsDir(), &st))
	total := int64(st.Blocks) * int64(st.Bsize)
	got := logs.FilterMessage("recordings").All()[0].ContextMap()
	t.Logf("recordings log line: %v", got)
	require.Equal(t, cfg.RecordingsDir(), got["dir"])
	require.Equal(t, fmt.Sprintf("%.0fMiB", float64(total)/(1<<20)), got["filesystem_size"])
	require.Equal(t, fmt.Sprintf("%.0fMiB", float64(int64(0.5*float64(total)))/(1<<20)), got["max_bytes"], "half of the file system")
	require.Contains(t, got, "free")
	require.Contains(t, got, "min_free")
	require.Contains(t, got, "room_for", "how long the room lasts at the configured bitrate")
}
