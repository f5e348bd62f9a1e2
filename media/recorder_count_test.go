package media

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/stretchr/testify/require"
)

// TestFailedSegmentNotCounted: a segment whose file cannot be created (a plain file stands
// where the recordings directory should be) fails the recording with the path in the
// error, and is neither counted nor listed; once the directory is back, the next attempt
// records and counts exactly the files it wrote.
func TestFailedSegmentNotCounted(t *testing.T) {
	hub := NewHub(HubOptions{})
	src := encodedSource(t, hub, 30, time.Second, 300)
	dir := filepath.Join(t.TempDir(), "recordings")
	rec, err := NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 2 * time.Second, Format: config.FormatMKV})
	require.NoError(t, err)
	require.NoError(t, os.Remove(dir))
	require.NoError(t, os.WriteFile(dir, []byte("not a directory"), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx) }()

	err = rec.Record(context.Background(), hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 480}))
	require.ErrorContains(t, err, dir, "the error names the file that could not be written")
	require.Zero(t, rec.Count(), "a file that could not be created is no segment")
	require.Empty(t, rec.Files())

	require.NoError(t, os.Remove(dir))
	require.NoError(t, os.Mkdir(dir, 0o750))
	sub := hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 480})
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Record(context.Background(), sub) }()
	require.Eventually(t, func() bool { return rec.Count() >= 2 }, 30*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-srcDone)
	sub.Close()
	require.NoError(t, <-recDone)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, rec.Count(), "the count is the files written")
	for _, f := range rec.Files() {
		require.Positive(t, ffprobeFrames(t, f), f)
	}
}
