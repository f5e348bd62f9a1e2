package media

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/stretchr/testify/require"
)

// decodedFrames decodes a file completely and counts its video frames.
func decodedFrames(t *testing.T, path string) int {
	t.Helper()
	p, err := gst.Parse("filesrc location="+quote(path)+" ! decodebin ! video/x-raw ! appsink name=out sync=false", gst.Options{Name: "count"})
	require.NoError(t, err)
	var n atomic.Int64
	require.NoError(t, p.OnSample("out", func(gst.Sample) { n.Add(1) }))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.ErrorIs(t, p.Run(ctx), gst.ErrEOS, "%s must decode to the end", path)
	return int(n.Load())
}

func TestSourceDescriptions(t *testing.T) {
	enc := config.Default().Media.Encoder
	tests := []struct {
		name string
		src  config.Source
		want []string
		err  string
	}{
		{"file", config.Source{Kind: config.SourceFile, Path: `/clips/my "best" clip.mp4`},
			[]string{`filesrc location="/clips/my \"best\" clip.mp4"`, "parsebin", "h264parse config-interval=-1", "appsink name=video", "sync=true"}, ""},
		{"test", config.Source{Kind: config.SourceTest, Width: 640, Height: 360, Framerate: 15},
			[]string{"videotestsrc is-live=true pattern=ball", "width=640,height=360,framerate=15/1", "x264enc name=encoder", "key-int-max=30", "bitrate=2000", "bframes=0"}, ""},
		{"unknown", config.Source{Kind: "webcam"}, nil, `media.source.kind "webcam" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desc, err := SourceDescription(tt.src, enc)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			for _, w := range tt.want {
				require.Contains(t, desc, w)
			}
			if tt.src.Kind != config.SourceFile {
				_, err = gst.Parse(desc, gst.Options{})
				require.NoError(t, err, "GStreamer must parse %s", desc)
			}
		})
	}
}

func TestSegmentDescription(t *testing.T) {
	desc, err := SegmentDescription("/rec", 10*time.Second, config.FormatMP4)
	require.NoError(t, err)
	require.Contains(t, desc, "max-size-time=10000000000")
	require.Contains(t, desc, "muxer-factory=mp4mux")
	_, err = gst.Parse(desc, gst.Options{})
	require.NoError(t, err)
	_, err = SegmentDescription("/rec", time.Second, "avi")
	require.ErrorContains(t, err, `recording.local.format "avi"`)
}

// TestFileToSegments plays the test clip in real time for a few seconds into the Hub and a
// local recorder, and checks that the segments hold every frame that was published.
func TestFileToSegments(t *testing.T) {
	for _, format := range []string{config.FormatMKV, config.FormatMP4} {
		t.Run(format, func(t *testing.T) {
			clip, side := testclip.Path(t, testclip.Ball)
			desc, err := SourceDescription(config.Source{Kind: config.SourceFile, Path: clip}, config.Encoder{})
			require.NoError(t, err)

			hub := NewHub(HubOptions{PreRoll: 2 * time.Second})
			dir := filepath.Join(t.TempDir(), "recordings")
			rec, err := NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 2 * time.Second, Format: format})
			require.NoError(t, err)
			sub := hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 256})
			src := NewSource(SourceOptions{Description: desc, Hub: hub})

			ctx, cancel := context.WithTimeout(context.Background(), 5500*time.Millisecond)
			defer cancel()
			recDone := make(chan error, 1)
			go func() { recDone <- rec.Record(context.Background(), sub) }()
			require.NoError(t, src.Run(ctx))
			sub.Close() // the source stopped: let the recorder finish
			require.NoError(t, <-recDone)

			published := int(src.Frames())
			require.InDelta(t, 5.5*float64(side.FPS), published, float64(side.FPS), "real-time playback")
			files := rec.Files()
			require.GreaterOrEqual(t, len(files), 2)
			total := 0
			for _, f := range files {
				require.True(t, strings.HasSuffix(f, "."+format))
				n := decodedFrames(t, f)
				require.Positive(t, n, f)
				total += n
			}
			require.Equal(t, published, total, "every published frame is in a segment")
		})
	}
}

func TestSourceLoopsAndKeepsTimelineContinuous(t *testing.T) {
	// A 1 s clip of our own, looped: timestamps must keep increasing across the restarts.
	dir := t.TempDir()
	clip := filepath.Join(dir, "short.mkv")
	gen, err := gst.Parse("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=160,height=90,framerate=10/1 ! "+
		"x264enc key-int-max=5 bframes=0 ! h264parse ! matroskamux ! filesink location="+clip, gst.Options{})
	require.NoError(t, err)
	require.ErrorIs(t, gen.Run(context.Background()), gst.ErrEOS)

	desc, err := SourceDescription(config.Source{Kind: config.SourceFile, Path: clip}, config.Encoder{})
	require.NoError(t, err)
	desc = strings.Replace(desc, "sync=true", "sync=false", 1) // no need to wait in real time
	ended := NewSource(SourceOptions{Description: desc, Hub: NewHub(HubOptions{})})
	require.ErrorIs(t, ended.Run(context.Background()), ErrSourceEnded)
	require.EqualValues(t, 10, ended.Frames())

	hub := NewHub(HubOptions{})
	sub := hub.Subscribe(SubscribeOptions{QueueFrames: 1000})
	looped := NewSource(SourceOptions{Description: desc, Hub: hub, Loop: true})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for looped.Frames() < 35 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	require.NoError(t, looped.Run(ctx))

	var last time.Duration = -1
	keys := 0
	for sub.Stats().Queued > 0 {
		au, err := sub.Next(context.Background())
		require.NoError(t, err)
		if last >= 0 && au.Keyframe && au.Seq > 10 {
			keys++
		}
		require.Greater(t, au.PTS, last, "timeline goes backwards at unit %d", au.Seq)
		last = au.PTS
	}
	require.GreaterOrEqual(t, keys, 6)
}
