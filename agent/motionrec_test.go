package agent

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/motion"
	"github.com/stretchr/testify/require"
)

// probeFrames decodes a file with ffprobe, which must accept it, and returns its frame count.
func probeFrames(t *testing.T, path string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	require.NoError(t, err, "ffprobe rejects %s: %s", path, out)
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	require.NoError(t, err, "ffprobe %s: %s", path, out)
	return n
}

// fileStart parses a segment name's time (its first keyframe's UTC time).
func fileStart(t *testing.T, path string) time.Time {
	t.Helper()
	stem := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if i := strings.LastIndexByte(stem, '-'); i > 0 {
		stem = stem[:i]
	}
	ts, err := time.Parse("20060102T150405.000Z", stem)
	require.NoError(t, err, path)
	return ts
}

// motionAgent runs an agent that records motion events of a still test picture (the test
// says when motion happens).
func motionAgent(t *testing.T, idleFPS int) (*Agent, func()) {
	t.Helper()
	return motionAgentWith(t, idleFPS, 2*time.Second)
}

// motionAgentWith is motionAgent with motion.pre_roll set to preRoll.
func motionAgentWith(t *testing.T, idleFPS int, preRoll time.Duration) (*Agent, func()) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Media.Source = config.Source{Kind: config.SourceCustom, Format: config.FormatRaw, Width: 320, Height: 180, Framerate: 30,
		Pipeline: "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=180,framerate=30/1"}
	cfg.Recording.Mode = config.RecordMotion
	cfg.Recording.Local.Segment = 30 * time.Second // one file per recording
	cfg.Motion.PreRoll = preRoll
	cfg.Motion.IdleBitrateKbps, cfg.Motion.IdleFramerate = 0, idleFPS
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return a.Frames() > 100 }, 20*time.Second, 20*time.Millisecond, "3 s of video for the pre-roll")
	return a, func() { cancel(); require.NoError(t, <-done) }
}

// motionRecordingEnded reports whether every motion recording has finalised its file.
func motionRecordingEnded(a *Agent) bool {
	a.motion.mu.Lock()
	defer a.motion.mu.Unlock()
	for _, s := range a.motion.sessions {
		select {
		case <-s.done:
		default:
			return false
		}
	}
	return len(a.motion.sessions) > 0
}

func motionStart(a *Agent, preRoll time.Duration) {
	now := time.Now()
	a.onMotion(motion.Event{Kind: motion.EventStart, Start: now, PreRollFrom: now.Add(-preRoll)})
}

func motionEnd(a *Agent) {
	now := time.Now()
	a.onMotion(motion.Event{Kind: motion.EventEnd, Start: now, End: now, PreRollFrom: now})
}

// TestMotionRecordingsNeverRepeat: an event that starts while the previous one's recording
// is still open extends it; one that starts later gets its own file, which does not repeat
// what the previous file holds.
func TestMotionRecordingsNeverRepeat(t *testing.T) {
	// A pre-roll of 4 s: the 1 s between the first two events stays well within it even on
	// a loaded machine.
	const preRoll = 4 * time.Second
	a, stop := motionAgentWith(t, 0, preRoll)
	motionStart(a, preRoll)
	time.Sleep(1500 * time.Millisecond)
	motionEnd(a)
	time.Sleep(time.Second) // within the pre-roll: the same recording goes on
	motionStart(a, preRoll)
	time.Sleep(time.Second)
	motionEnd(a)
	// The recording ends pre_roll after the event; the next event's pre-roll reaches back
	// into what it wrote.
	require.Eventually(t, func() bool { return motionRecordingEnded(a) }, 30*time.Second, 20*time.Millisecond, "the first recording ends")
	motionStart(a, preRoll)
	time.Sleep(time.Second)
	motionEnd(a)
	time.Sleep(500 * time.Millisecond)
	stop()

	files := a.Recordings()
	require.Len(t, files, 2, "two recordings: the second event extended the first")
	first, second := files[0], files[1]
	n1 := probeFrames(t, first)
	require.Positive(t, probeFrames(t, second))
	end1 := fileStart(t, first).Add(time.Duration(n1) * time.Second / 30)
	overlap := end1.Sub(fileStart(t, second))
	t.Logf("first recording %d frames, ends %s; second starts %s (overlap %s)", n1, end1.Format("15:04:05.000"),
		fileStart(t, second).Format("15:04:05.000"), overlap)
	require.Less(t, overlap, 200*time.Millisecond, "the second recording does not repeat the first")
	// The pre-roll (from the keyframe at or before it, as far as the hub reaches), 1.5 s of
	// motion, the 1 s between the events (written when the second came), 1 s of motion: one
	// continuous file.
	require.GreaterOrEqual(t, n1, 150, "the first file holds both events and the time between them")
}

// TestMotionRecordingSurvivesIdleProfile: motion starts while the encoder runs on its idle
// frame rate; the switch to the full rate brings a new SPS, and the recording goes on
// through it.
func TestMotionRecordingSurvivesIdleProfile(t *testing.T) {
	a, stop := motionAgent(t, 10)
	require.Eventually(t, func() bool { return a.Source().Framerate() == 10 }, 10*time.Second, 20*time.Millisecond, "idle profile")
	time.Sleep(2 * time.Second) // idle-rate frames in the pre-roll
	motionStart(a, 2*time.Second)
	require.Eventually(t, func() bool { return a.Source().Framerate() == 30 }, 5*time.Second, 20*time.Millisecond, "full rate on motion")
	time.Sleep(4 * time.Second)
	motionEnd(a)
	time.Sleep(2500 * time.Millisecond)
	stop()

	files := a.Recordings()
	require.NotEmpty(t, files)
	frames := 0
	for _, f := range files {
		frames += probeFrames(t, f)
	}
	t.Logf("%d files, %d frames", len(files), frames)
	require.GreaterOrEqual(t, frames, 4*30*2/3, "the 4 s of motion at 30 fps are recorded")
}
