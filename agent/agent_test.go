package agent

import (
	"context"
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
	return cfg
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
	if media.KVSAvailable() {
		t.Skip("kvssink is installed here")
	}
	cfg := testConfig(t)
	cfg.Recording.KVS.Enabled = true
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
