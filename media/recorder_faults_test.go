package media

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/stretchr/testify/require"
)

// longTests reports whether the long variants of the fault scenarios run.
func longTests() bool { return os.Getenv("EDGECAM_LONG_TESTS") == "1" }

// ffprobeFrames decodes a file with ffprobe, which must accept it, and returns its video
// frame count.
func ffprobeFrames(t *testing.T, path string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	require.NoError(t, err, "ffprobe rejects %s: %s", path, out)
	n, err := strconv.Atoi(strings.TrimSpace(strings.Split(strings.TrimSpace(string(out)), "\n")[0]))
	require.NoError(t, err, "ffprobe %s: %s", path, out)
	return n
}

// encodedSource is a live x264 source of a small test picture.
func encodedSource(t *testing.T, hub *Hub, fps int, gop time.Duration, kbps int) *Source {
	t.Helper()
	m := config.Default().Media
	m.Source = config.Source{Kind: config.SourceCustom, Format: config.FormatRaw, Width: 320, Height: 180, Framerate: fps,
		Pipeline: "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=180,framerate=" + strconv.Itoa(fps) + "/1"}
	m.Encoder.Kind = config.EncoderX264
	m.Encoder.BitrateKbps = kbps
	m.Encoder.GOP = gop
	m.Analysis.Enabled = false
	plan, err := ResolvePlan(m, gst.Probe{})
	require.NoError(t, err)
	src, err := NewSource(SourceOptions{Plan: plan, Hub: hub})
	require.NoError(t, err)
	return src
}

// TestFramerateSwitchesKeepSegmentsPlayable switches the encoder's frame rate while it
// records (the idle profile does so at every idle↔active switch): x264 emits a new SPS
// each time, and each must start a new segment cleanly. Every segment plays, and every
// published frame is in one (no gap at all).
func TestFramerateSwitchesKeepSegmentsPlayable(t *testing.T) {
	total, every := 16*time.Second, 4*time.Second
	if longTests() {
		total, every = time.Minute, 5*time.Second
	}
	hub := NewHub(HubOptions{})
	src := encodedSource(t, hub, 30, time.Second, 300)
	dir := filepath.Join(t.TempDir(), "recordings")
	rec, err := NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 3 * time.Second, Format: config.FormatMKV})
	require.NoError(t, err)
	sub := hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 480})
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Record(context.Background(), sub) }()

	ctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx) }()
	switches := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			fps := 30
			if switches%2 == 0 {
				fps = 10
			}
			require.NoError(t, src.SetFramerate(fps))
			switches++
		}
	}
	require.NoError(t, <-srcDone)
	sub.Close()
	require.NoError(t, <-recDone, "recording must survive frame-rate changes")

	published := int(src.FrameCount())
	files := rec.Files()
	require.Greater(t, len(files), switches, "each new SPS starts a new segment")
	frames := 0
	for _, f := range files {
		n := ffprobeFrames(t, f)
		require.Positive(t, n, f)
		frames += n
	}
	t.Logf("%d frame-rate switches, %d segments, %d of %d frames recorded", switches, len(files), frames, published)
	require.Equal(t, published, frames, "every published frame is in a playable segment")
	require.Equal(t, len(files), rec.Count())
}

// TestStopWithoutFramesWritesNothing stops a recorder that never got a frame: no file is
// created and none is counted.
func TestStopWithoutFramesWritesNothing(t *testing.T) {
	for _, format := range []string{config.FormatMKV, config.FormatMP4} {
		t.Run(format, func(t *testing.T) {
			hub := NewHub(HubOptions{})
			dir := filepath.Join(t.TempDir(), "recordings")
			rec, err := NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 2 * time.Second, Format: format})
			require.NoError(t, err)
			sub := hub.Subscribe(SubscribeOptions{Name: "recorder"})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- rec.Record(ctx, sub) }()
			cancel()
			require.NoError(t, <-done)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Empty(t, entries, "no file without a frame")
			require.Zero(t, rec.Count())
			require.Empty(t, rec.Files())
		})
	}
}
