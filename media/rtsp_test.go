package media

import (
	"context"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestRTSPPassthroughSurvivesCameraRestart records a real RTSP server's stream with no
// re-encoding (the SPS is the clip's own), then stops the server for 5 s and starts it
// again: frames flow again without a process restart, and the restart is logged.
func TestRTSPPassthroughSurvivesCameraRestart(t *testing.T) {
	clipPath, side := testclip.Path(t, testclip.Ball)
	clip, err := rtsptest.ReadClip(clipPath)
	require.NoError(t, err)
	srv, err := rtsptest.NewServer(clip, time.Second/time.Duration(side.FPS))
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(srv.Stop)

	m := config.Default().Media
	m.Source.Kind = config.SourceRTSP
	m.Source.URL = "rtsp://viewer:s3cret@" + srv.URL()[len("rtsp://"):]
	m.Source.Latency = 100 * time.Millisecond
	m.StallTimeout = 2 * time.Second
	m.RestartBackoff = 2 * time.Second
	plan, err := ResolvePlan(m, gst.Probe{})
	require.NoError(t, err)
	require.Equal(t, EncodePassthrough, plan.Encode)

	core, logs := observer.New(zap.InfoLevel)
	hub := NewHub(HubOptions{})
	sub := hub.Subscribe(SubscribeOptions{QueueFrames: 10000})
	src, err := NewSource(SourceOptions{Plan: plan, Hub: hub, Log: zap.New(core), StallTimeout: m.StallTimeout, MaxBackoff: m.RestartBackoff})
	require.NoError(t, err)
	require.NotContains(t, src.Description(), "s3cret", "the password never reaches a log")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	first, err := sub.Next(ctxTimeout(t, 15*time.Second))
	require.NoError(t, err)
	require.True(t, first.Keyframe)
	wantSPS, _ := h264.ParamSets(joinNALUs(clip[0].NALUs))
	require.NotNil(t, wantSPS)
	require.Equal(t, wantSPS, src.SPS(), "passed through: the camera's own SPS")
	require.Eventually(t, func() bool { return src.FrameCount() >= 30 }, 10*time.Second, 20*time.Millisecond)
	select {
	case f := <-src.Frames():
		require.Equal(t, 320, f.Width)
		require.Equal(t, 180, f.Height)
		require.Len(t, f.Data, 320*180)
	case <-time.After(5 * time.Second):
		t.Fatal("no analysis frame from the RTSP stream")
	}

	srv.Stop()
	time.Sleep(5 * time.Second)
	before := src.FrameCount()
	require.NoError(t, srv.Start())
	require.Eventually(t, func() bool { return src.FrameCount() >= before+30 }, 20*time.Second, 50*time.Millisecond,
		"frames flow again after the camera came back")
	_, restarts := src.Stats()
	require.Positive(t, restarts)
	require.GreaterOrEqual(t, srv.Sessions(), 2)
	restartLogs := logs.FilterMessage("video pipeline stopped; restarting").All()
	require.NotEmpty(t, restartLogs)
	for _, e := range logs.All() {
		for _, f := range e.Context {
			require.NotContains(t, f.String, "s3cret", "log line %q leaks the password", e.Message)
		}
	}
}

func joinNALUs(nalus [][]byte) []byte {
	var out []byte
	for _, n := range nalus {
		out = append(out, 0, 0, 0, 1)
		out = append(out, n...)
	}
	return out
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
