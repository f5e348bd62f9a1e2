package agent

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/media"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// rtspClip serves a test clip over a real RTSP server (looping in real time).
func rtspClip(t *testing.T, name string, fps int) *rtsptest.Server {
	t.Helper()
	path, _ := testclip.Path(t, name)
	clip, err := rtsptest.ReadClip(path)
	require.NoError(t, err)
	srv, err := rtsptest.NewServer(clip, time.Second/time.Duration(fps))
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(srv.Stop)
	return srv
}

// analysisState reads the analysis part of the status as a consumer of the status message
// would (JSON).
func analysisState(t *testing.T, a *Agent) AnalysisStatus {
	t.Helper()
	// Not through StatusNow: its uptime races Run's start (the agent reads it only after).
	b, err := json.Marshal(a.analysisStatus())
	require.NoError(t, err)
	var st *AnalysisStatus
	require.NoError(t, json.Unmarshal(b, &st))
	require.NotNil(t, st, "motion analysis is on: the status says where it comes from")
	return *st
}

// motionEvents returns how many motion events started.
func motionEvents(a *Agent) int {
	a.motion.mu.Lock()
	defer a.motion.mu.Unlock()
	return a.motion.events
}

// recordingUngated reports whether every motion recording is running (none held or ended).
func recordingUngated(a *Agent) bool {
	a.motion.mu.Lock()
	defer a.motion.mu.Unlock()
	if len(a.motion.sessions) == 0 {
		return false
	}
	for _, s := range a.motion.sessions {
		select {
		case <-s.done:
			return false
		default:
		}
		if s.end != nil {
			return false
		}
	}
	return true
}

// TestMotionFromSubstream: a camera offers a 720p30 main stream and a 640x360 15 fps
// substream (two real RTSP servers). The main stream is passed through to the hub; motion
// is detected on the substream and starts a motion recording. When the substream goes
// away the analysis is degraded in the status and recording fails safe (it records
// everything, the main stream untouched); when it is back, detection runs again and finds
// the next motion.
func TestMotionFromSubstream(t *testing.T) {
	main := rtspClip(t, testclip.Live720, 30)
	sub := rtspClip(t, testclip.Ball, 15) // still 0-5 s, a moving ball 5-9 s and 16-21 s, looping every 30 s

	cfg := testConfig(t)
	cfg.Media.Source.Kind, cfg.Media.Source.URL = config.SourceRTSP, main.URL()
	subURL := strings.Replace(sub.URL(), "rtsp://", "rtsp://cam:hunter2@", 1)
	cfg.Media.Analysis.Source = subURL
	cfg.Media.StallTimeout = time.Second
	cfg.Media.RestartBackoff = 2 * time.Second
	cfg.Recording.Mode = config.RecordMotion
	cfg.Recording.Local.Segment = time.Minute
	cfg.Media.Encoder.GOP = 2 * time.Second
	cfg.Motion.PreRoll = time.Second
	cfg.Motion.PostRoll = time.Second
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	require.NotContains(t, a.Source().Description(), "avdec_h264", "the main stream is not decoded: analysis has its own source")
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

	// Motion on the substream: an event, and a motion recording of the main stream.
	require.Eventually(t, func() bool { return motionEvents(a) >= 1 }, 40*time.Second, 20*time.Millisecond,
		"the ball moving in the substream is motion")
	st := analysisState(t, a)
	require.Equal(t, "ok", st.State)
	require.False(t, st.Degraded)
	require.Contains(t, []string{media.InProcessOpenH264, "openh264dec", "avdec_h264"}, st.Decoder,
		"software on this machine: libopenh264 in process when installed (the Go RTSP client reads the substream)")
	require.Equal(t, strings.Replace(subURL, "hunter2", "***", 1), st.Source, "the password stays out of the status")
	require.Positive(t, st.Frames)
	require.Eventually(t, func() bool { return len(a.Recordings()) >= 1 }, 10*time.Second, 20*time.Millisecond, "the event is recorded")

	// The substream goes away: degraded, and recording fails safe while the main stream
	// flows on.
	sub.Stop()
	require.Eventually(t, func() bool { return analysisState(t, a).Degraded }, 15*time.Second, 20*time.Millisecond)
	down := time.Now()
	st = analysisState(t, a)
	require.Equal(t, "degraded", st.State)
	require.True(t, st.FailSafe)
	require.NotEmpty(t, st.Reason)
	require.Eventually(t, func() bool { return recordingUngated(a) }, 10*time.Second, 20*time.Millisecond,
		"while analysis is down, motion recording records everything")
	framesAtDown := a.Frames()
	require.Eventually(t, func() bool { return a.Frames() > framesAtDown+60 }, 10*time.Second, 20*time.Millisecond,
		"the main stream is not disturbed")
	require.True(t, recordingUngated(a), "still recording, 2 s of main stream later")

	// Back: analysis recovers by itself, recording follows motion again, and the next
	// motion in the substream is found.
	events := motionEvents(a)
	require.NoError(t, sub.Start())
	require.Eventually(t, func() bool { st := analysisState(t, a); return st.State == "ok" && !st.FailSafe }, 30*time.Second, 20*time.Millisecond)
	up := time.Now()
	require.Positive(t, analysisState(t, a).Restarts)
	require.Eventually(t, func() bool { return motionEvents(a) > events }, 40*time.Second, 20*time.Millisecond,
		"motion is detected on the substream again")
	stop()

	// The outage is in the recordings: at 30 fps, at least most of its frames.
	frames := 0
	for _, f := range a.Recordings() {
		frames += probeFrames(t, f)
	}
	outage := up.Sub(down)
	t.Logf("outage %s, %d recorded frames in %d files", outage.Round(time.Millisecond), frames, len(a.Recordings()))
	require.GreaterOrEqual(t, frames, int(outage.Seconds()*30*0.8), "the outage was recorded")
}

// TestMotionFromMainStreamGoClient: with media.source.rtsp_client go, motion analysis of
// the main stream decodes the hub's access units (no GStreamer capture pipeline) and
// finds the ball moving in it; the status says so.
func TestMotionFromMainStreamGoClient(t *testing.T) {
	tests := []struct {
		name          string
		decoder       string
		keyframesOnly bool
		want          string
	}{
		{"every frame, auto (avdec_h264 from appsrc)", config.DecoderAuto, false, "avdec_h264"},
		{"openh264 (libopenh264 in process)", config.DecoderOpenH264, false, media.InProcessOpenH264},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			main := rtspClip(t, testclip.Ball, 15) // a moving ball 5-9 s and 16-21 s, looping every 30 s
			cfg := testConfig(t)
			cfg.Media.Source.Kind, cfg.Media.Source.URL = config.SourceRTSP, main.URL()
			cfg.Media.Source.RTSPClient = config.RTSPClientGo
			cfg.Media.Analysis.Decoder = tt.decoder
			cfg.Media.Analysis.KeyframesOnly = tt.keyframesOnly
			require.Empty(t, cfg.Validate())
			a, err := New(Options{Config: cfg})
			require.NoError(t, err)
			require.Contains(t, a.Source().Description(), "Go RTSP client")
			st := analysisState(t, a)
			require.Equal(t, "main", st.Source)
			require.Equal(t, tt.want, st.Decoder)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() { cancel(); require.NoError(t, <-done) }()
			require.Eventually(t, func() bool { return motionEvents(a) >= 1 }, 40*time.Second, 20*time.Millisecond,
				"the ball moving in the main stream is motion")
			st = analysisState(t, a)
			require.Equal(t, "ok", st.State)
			require.Positive(t, st.Frames)
		})
	}
}

// TestMotionAnalysisStatusMain: analysis of the main stream says so, with its decoder.
func TestMotionAnalysisStatusMain(t *testing.T) {
	cfg := testConfig(t)
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	st := analysisState(t, a)
	require.Equal(t, AnalysisStatus{Source: "main", State: "ok"}, st, "raw test video: nothing to decode")
	require.Contains(t, string(a.statusJSON("running")), `"analysis":{"source":"main","state":"ok","degraded":false}`)

	cfg.Motion.Enabled = false
	a, err = New(Options{Config: cfg})
	require.NoError(t, err)
	require.Nil(t, a.StatusNow("running").Motion.Analysis)
}

// TestDeadSubstreamFailsSafe: a substream that never answers (nothing listens on its
// port) leaves analysis degraded from the start, and motion recording records everything.
func TestDeadSubstreamFailsSafe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "rtsp://" + ln.Addr().String() + "/stream2"
	require.NoError(t, ln.Close())

	cfg := testConfig(t)
	cfg.Media.Analysis.Source = dead
	cfg.Media.StallTimeout = time.Second
	cfg.Recording.Mode = config.RecordMotion
	cfg.Recording.Local.Segment = time.Minute
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	require.Eventually(t, func() bool { return analysisState(t, a).Degraded }, 15*time.Second, 20*time.Millisecond)
	st := analysisState(t, a)
	require.True(t, st.FailSafe)
	require.Zero(t, st.Frames)
	fams := gatherMetrics(t, a)
	require.Equal(t, 1.0, value(t, fams, "edgecam_motion_analysis_state", "state", "degraded"), "/metrics says analysis is degraded")
	require.Zero(t, value(t, fams, "edgecam_motion_analysis_state", "state", "ok"))
	require.Eventually(t, func() bool { return recordingUngated(a) }, 10*time.Second, 20*time.Millisecond,
		"no analysis at all: motion recording records everything")
	require.Eventually(t, func() bool { return len(a.Recordings()) >= 1 }, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, motionEvents(a), "a dead substream is no motion")
}

// gatherMetrics returns the agent's metric families by name, as /metrics would serve them.
func gatherMetrics(t *testing.T, a *Agent) map[string]*dto.MetricFamily {
	t.Helper()
	list, err := a.Metrics().Registry.Gather()
	require.NoError(t, err)
	fams := map[string]*dto.MetricFamily{}
	for _, f := range list {
		fams[f.GetName()] = f
	}
	return fams
}
