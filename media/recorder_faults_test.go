package media

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
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

// encodedUnits encodes n frames of noise (large frames) with a keyframe every gop frames.
func encodedUnits(t *testing.T, n, gop int) []AccessUnit {
	t.Helper()
	p, err := gst.Parse(fmt.Sprintf("videotestsrc pattern=snow num-buffers=%d ! video/x-raw,width=640,height=360,framerate=30/1 ! "+
		"x264enc key-int-max=%d bframes=0 tune=zerolatency speed-preset=ultrafast bitrate=8000 ! %s ! appsink name=out sync=false",
		n, gop, h264Parse), gst.Options{Name: "encode"})
	require.NoError(t, err)
	var mu sync.Mutex
	var out []AccessUnit
	require.NoError(t, p.OnSample("out", func(s gst.Sample) {
		mu.Lock()
		defer mu.Unlock()
		out = append(out, AccessUnit{Data: s.Data, Keyframe: h264.IsKeyframe(s.Data), Duration: time.Second / 30})
	}))
	require.ErrorIs(t, p.Run(context.Background()), gst.ErrEOS)
	require.Len(t, out, n)
	return out
}

// rssBytes is the process's resident memory.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestStalledSinkBoundsMemory records into a sink that stops taking data (a FIFO that
// nobody reads, like a stalled SD card): the recording pipeline's queue stays at its
// bound, the process does not grow, and the hub drops whole GOPs for the recorder and
// counts them.
func TestStalledSinkBoundsMemory(t *testing.T) {
	frames, pace := 2000, 2*time.Millisecond
	if longTests() {
		frames, pace = 900, time.Second/30 // 30 s of real time
	}
	units := encodedUnits(t, 60, 30)
	size := 0
	for _, u := range units {
		size += len(u.Data)
	}
	fifo := filepath.Join(t.TempDir(), "stalled")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	reader, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0) // open, never read: writes block once the pipe is full
	require.NoError(t, err)
	defer reader.Close()

	hub := NewHub(HubOptions{})
	f := &feeder{name: "stalled", desc: appsrcH264 + " ! h264parse ! filesink location=" + quote(fifo), log: zap.NewNop(), drain: 2 * time.Second}
	sub := hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 120})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.record(ctx, sub) }()

	runtime.GC()
	before := rssBytes(t)
	for i := range frames {
		u := units[i%len(units)]
		u.PTS = time.Duration(i) * time.Second / 30
		u.DTS = u.PTS
		hub.Publish(u)
		time.Sleep(pace)
	}
	grown := rssBytes(t) - before
	st := sub.Stats()
	pushed := int64(frames) * int64(size) / int64(len(units))
	t.Logf("%d units (%d MB) into a stalled sink: RSS grew %.1f MB, %d units dropped by the hub, %d queued",
		frames, pushed>>20, float64(grown)/(1<<20), st.Dropped, st.Queued)
	require.Positive(t, st.Dropped, "a subscriber that cannot write loses GOPs, counted")
	require.LessOrEqual(t, st.Queued, 120+30, "the subscription queue stays bounded")
	require.Less(t, grown, int64(16<<20), "memory stays bounded while the sink is stalled (%d MB pushed)", pushed>>20)

	// The sink comes back: the recorder ends cleanly.
	go func() { _, _ = io.Copy(io.Discard, reader) }()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the recorder did not stop after its sink came back")
	}
}

// smallDisk mounts a tmpfs of size bytes on a new directory (root only; skips otherwise).
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// segmentStart parses a segment name's time (its first keyframe's UTC time).
func segmentStart(t *testing.T, path string) time.Time {
	t.Helper()
	stem := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if i := strings.LastIndexByte(stem, '-'); i > 0 {
		stem = stem[:i]
	}
	ts, err := time.Parse("20060102T150405.000Z", stem)
	require.NoError(t, err, path)
	return ts
}

// TestDiskFullMidSegment fills the recordings' file system while a segment is being written,
// with a floor smaller than a segment: the recorder has the janitor delete old segments and
// goes on at once. No empty file is left, every file plays, and the recording misses at
// most about one GOP.
func TestDiskFullMidSegment(t *testing.T) {
	disk := smallDisk(t, 8<<20)
	dir := filepath.Join(disk, "recordings")
	hub := NewHub(HubOptions{})
	const fps, gop = 30, time.Second
	src := encodedSource(t, hub, fps, gop, 2000)
	src.desc = strings.Replace(src.desc, "pattern=ball", "pattern=snow", 1) // noise: x264 spends its whole bitrate
	janitor := NewJanitor(JanitorOptions{Dir: dir, Ext: config.FormatMKV, MinFree: 128 << 10, Interval: time.Hour})
	rec, err := NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 2 * time.Second, Format: config.FormatMKV, Janitor: janitor, Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	require.NoError(t, err)
	sub := hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 480})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	jctx, stopJanitor := context.WithCancel(context.Background())
	defer stopJanitor()
	go janitor.Run(jctx)
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Record(context.Background(), sub) }()
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx) }()

	require.Eventually(t, func() bool { return rec.Count() >= 4 }, 30*time.Second, 50*time.Millisecond)
	// Something else fills the disk, to 64 KiB short of full.
	free, _, err := diskSpace(dir)
	require.NoError(t, err)
	ballast := filepath.Join(disk, "ballast")
	require.NoError(t, os.WriteFile(ballast, make([]byte, free-64<<10), 0o600))
	filled := rec.Count()
	require.Eventually(t, func() bool { return rec.Count() >= filled+3 }, 30*time.Second, 50*time.Millisecond,
		"recording goes on after the disk filled up")
	cancel()
	require.NoError(t, <-srcDone)
	sub.Close()
	require.NoError(t, <-recDone, "a full disk is handled inside the recorder")

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var files []string
	for _, e := range entries {
		files = append(files, filepath.Join(dir, e.Name()))
	}
	require.GreaterOrEqual(t, len(files), 2)
	require.Positive(t, janitor.Deleted(), "the janitor made room")
	var prevEnd time.Time
	maxGap := time.Duration(0)
	for _, f := range files { // names sort in time order
		info, err := os.Stat(f)
		require.NoError(t, err)
		require.Greater(t, info.Size(), int64(minSegmentBytes), "%s is empty", f)
		n := ffprobeFrames(t, f)
		require.Positive(t, n, f)
		start := segmentStart(t, f)
		if !prevEnd.IsZero() {
			maxGap = max(maxGap, start.Sub(prevEnd))
		}
		prevEnd = start.Add(time.Duration(n) * time.Second / fps)
	}
	t.Logf("%d files left, %d deleted by the janitor, longest gap %s", len(files), janitor.Deleted(), maxGap)
	require.LessOrEqual(t, maxGap, gop+500*time.Millisecond, "the recording misses at most about one GOP")
}

// TestOpenSegmentPlaysAfterPowerCut copies a segment while it is being written, as a power
// cut would leave it: it must play up to its last complete part (Matroska: cluster; MP4: 1 s
// fragment). A plain MP4 has its index (moov) only at the end and would not play at all.
func TestOpenSegmentPlaysAfterPowerCut(t *testing.T) {
	for _, format := range []string{config.FormatMKV, config.FormatMP4} {
		t.Run(format, func(t *testing.T) {
			hub := NewHub(HubOptions{})
			src := encodedSource(t, hub, 30, time.Second, 500)
			dir := filepath.Join(t.TempDir(), "recordings")
			rec, err := NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 30 * time.Second, Format: format})
			require.NoError(t, err)
			sub := hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 480})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srcDone := make(chan error, 1)
			go func() { srcDone <- src.Run(ctx) }()
			recDone := make(chan error, 1)
			go func() { recDone <- rec.Record(context.Background(), sub) }()
			defer func() { cancel(); <-srcDone; sub.Close(); <-recDone }()

			require.Eventually(t, func() bool { return len(rec.Files()) == 1 }, 20*time.Second, 20*time.Millisecond)
			start := src.FrameCount()
			require.Eventually(t, func() bool { return src.FrameCount() > start+120 }, 20*time.Second, 20*time.Millisecond)
			data, err := os.ReadFile(rec.Files()[0])
			require.NoError(t, err)
			cut := filepath.Join(t.TempDir(), "cut."+format)
			require.NoError(t, os.WriteFile(cut, data, 0o600))
			n := ffprobeFrames(t, cut)
			t.Logf("%s cut after %d frames: %d bytes, %d frames play", format, src.FrameCount(), len(data), n)
			require.GreaterOrEqual(t, n, 30, "at least a second plays")
		})
	}
}

// ffprobeClean is ffprobeFrames that also fails on any complaint (a file cut mid-frame).
func ffprobeClean(t *testing.T, path string) int {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "ffprobe rejects %s: %s", path, stderr.String())
	require.Empty(t, stderr.String(), "ffprobe complains about %s", path)
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	require.NoError(t, err)
	return n
}

// TestRecoverCutSegments: a recorder starting on a directory that a crash left behind
// repairs the segment that was cut short (it then plays to its end without a complaint),
// deletes one without a frame, and leaves finished segments alone.
func TestRecoverCutSegments(t *testing.T) {
	for _, format := range []string{config.FormatMKV, config.FormatMP4} {
		t.Run(format, func(t *testing.T) {
			hub := NewHub(HubOptions{})
			src := encodedSource(t, hub, 30, time.Second, 500)
			dir := filepath.Join(t.TempDir(), "recordings")
			rec, err := NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 2 * time.Second, Format: format})
			require.NoError(t, err)
			sub := hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 480})
			ctx, cancel := context.WithCancel(context.Background())
			srcDone := make(chan error, 1)
			go func() { srcDone <- src.Run(ctx) }()
			recDone := make(chan error, 1)
			go func() { recDone <- rec.Record(context.Background(), sub) }()
			require.Eventually(t, func() bool { return rec.Count() >= 3 }, 30*time.Second, 20*time.Millisecond)
			cancel()
			require.NoError(t, <-srcDone)
			sub.Close()
			require.NoError(t, <-recDone)

			files := rec.Files()
			for _, f := range files {
				require.True(t, finalised(f, format), "%s was closed properly", f)
			}
			// A crash: the newest segment cut at 60 %, and a newer one with its header only.
			last := files[len(files)-1]
			data, err := os.ReadFile(last)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(last, data[:len(data)*6/10], 0o644))
			require.False(t, finalised(last, format))
			empty := filepath.Join(dir, "29991231T235959.000Z."+format)
			require.NoError(t, os.WriteFile(empty, data[:300], 0o644))
			now := time.Now()
			require.NoError(t, os.Chtimes(empty, now.Add(time.Second), now.Add(time.Second)))
			before := map[string][]byte{}
			for _, f := range files[:len(files)-1] {
				before[f], err = os.ReadFile(f)
				require.NoError(t, err)
			}

			_, err = NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 2 * time.Second, Format: format})
			require.NoError(t, err)
			require.NoFileExists(t, empty, "a segment without a frame is deleted")
			n := ffprobeClean(t, last)
			require.Positive(t, n, "the cut segment keeps its complete frames")
			t.Logf("cut %s repaired: %d frames", filepath.Base(last), n)
			for f, b := range before {
				got, err := os.ReadFile(f)
				require.NoError(t, err)
				require.Equal(t, b, got, "%s is left alone", f)
			}
		})
	}
}
