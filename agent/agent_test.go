package agent

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/media"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func testConfig(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Media.Source.Kind = config.SourceTest
	cfg.Media.Source.Width, cfg.Media.Source.Height, cfg.Media.Source.Framerate = 320, 180, 30
	cfg.Media.Encoder.GOP = time.Second
	cfg.Recording.Local.Segment = 2 * time.Second
	cfg.Metrics.Listen = "127.0.0.1:0" // a free port: tests run side by side
	return cfg
}

func TestStateDirIsPrivate(t *testing.T) {
	cfg := testConfig(t)
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	_, err := New(Options{Config: cfg})
	require.NoError(t, err)
	st, err := os.Stat(cfg.StateDir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
}

func TestAgentRecordsTestSourceUntilCancelled(t *testing.T) {
	cfg := testConfig(t)
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	require.NoError(t, a.Run(ctx))
	require.InDelta(t, 105, a.Frames(), 30, "3.5 s at 30 fps")
	files := a.Recordings()
	require.Len(t, files, 2)
	for _, f := range files {
		require.Equal(t, filepath.Join(cfg.StateDir, "recordings"), filepath.Dir(f))
		require.FileExists(t, f)
	}
}

func TestAgentStopsWhenFileEnds(t *testing.T) {
	clip, side := testclip.Path(t, testclip.Ball)
	cfg := testConfig(t)
	cfg.Media.Source.Kind, cfg.Media.Source.Path, cfg.Media.Source.Loop = config.SourceFile, clip, false
	cfg.Recording.Mode = config.RecordOff
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	if testing.Short() {
		t.Skip("plays a 30 s clip in real time")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, a.Run(ctx), "a non-looping file that ends is a clean stop")
	require.EqualValues(t, side.Frames, a.Frames())
	require.Empty(t, a.Recordings())
}

func TestNewRejectsUnsupportedSource(t *testing.T) {
	cfg := testConfig(t)
	cfg.Media.Source.Kind = "webcam"
	_, err := New(Options{Config: cfg})
	require.ErrorContains(t, err, `media.source.kind "webcam" is not supported`)
}

func TestKVSWithoutKvssinkFallsBackToLocalSegments(t *testing.T) {
	cfg := testConfig(t)
	if found, _ := media.FindKVSSink(cfg.Recording.KVS.PluginDir, kvsPluginCandidates()); found != "" {
		t.Skip("kvssink is installed here: " + found)
	}
	cfg.Recording.KVS.Enabled = true
	// auto would take the native uploader; asking for kvssink where it is missing falls back.
	cfg.Recording.KVS.Uploader = config.KVSUploaderKVSSink
	cfg.Recording.Local.Enabled = false
	core, logs := observer.New(zap.InfoLevel)
	a, err := New(Options{Config: cfg, Log: zap.New(core)})
	require.NoError(t, err)
	warnings := logs.FilterLevelExact(zap.WarnLevel).All()
	require.Len(t, warnings, 1, "one clear warning")
	require.Contains(t, warnings[0].Message, "kvssink GStreamer element is not installed")
	require.Contains(t, warnings[0].Message, "recording local segments instead")
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	require.NoError(t, a.Run(ctx))
	require.NotEmpty(t, a.Recordings(), "local segments were written instead")
	require.Len(t, logs.FilterLevelExact(zap.WarnLevel).All(), 1, "and only once")
}

// TestIdleProfileAndMetrics: with nothing moving and nobody watching, the encoder drops to
// the idle profile; /metrics and /healthz report it.
func TestIdleProfileAndMetrics(t *testing.T) {
	cfg := testConfig(t)
	cfg.Media.Source = config.Source{Kind: config.SourceCustom, Format: config.FormatRaw, Width: 320, Height: 180, Framerate: 30,
		Pipeline: "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=180,framerate=30/1"}
	cfg.Motion.IdleBitrateKbps, cfg.Motion.IdleFramerate = 400, 10
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Recording.Mode = config.RecordOff
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	require.Eventually(t, func() bool { return a.Source().Bitrate() == 400 && a.Source().Framerate() == 10 }, 10*time.Second, 50*time.Millisecond,
		"a still scene runs on the idle profile")
	require.False(t, a.MotionActive())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + a.MetricsAddr() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	require.Eventually(t, func() bool { code, _ := get("/healthz"); return code == http.StatusOK }, 5*time.Second, 50*time.Millisecond)
	_, body := get("/metrics")
	require.Contains(t, body, "edgecam_encoder_bitrate_kbps 400")
	require.Contains(t, body, "edgecam_motion_active 0")
	require.Contains(t, body, "# TYPE edgecam_video_frames_total counter")
	require.Regexp(t, `edgecam_video_frames_total [1-9]`, body)
}
