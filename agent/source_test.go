package agent

import (
	"context"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/edgecam/edgecam/media/rtspingest"
	"github.com/stretchr/testify/require"
)

// TestRTSPClientChoice: media.source.rtsp_client auto takes the Go client exactly when the
// camera's H.264 is passed through and nothing decodes the main stream.
func TestRTSPClientChoice(t *testing.T) {
	tests := []struct {
		name   string
		adjust func(*config.Config)
		want   string
	}{
		{"analysis off", func(c *config.Config) { c.Media.Analysis.Enabled = false }, clientGo},
		{"motion off", func(c *config.Config) { c.Motion.Enabled = false }, clientGo},
		{"analysis from a substream", func(c *config.Config) { c.Media.Analysis.Source = "rtsp://127.0.0.1:1/sub" }, clientGo},
		{"analysis of the main stream", func(*config.Config) {}, clientGo},
		{"encoded again", func(c *config.Config) {
			c.Media.Analysis.Enabled, c.Media.Encoder.Kind = false, config.EncoderX264
		}, clientGStreamer},
		{"rtsps", func(c *config.Config) {
			c.Media.Analysis.Enabled, c.Media.Source.URL = false, "rtsps://127.0.0.1:1/stream"
		}, clientGStreamer},
		{"gstreamer asked for", func(c *config.Config) {
			c.Media.Analysis.Enabled, c.Media.Source.RTSPClient = false, config.RTSPClientGStreamer
		}, clientGStreamer},
		{"go asked for", func(c *config.Config) { c.Media.Source.RTSPClient = config.RTSPClientGo }, clientGo},
		{"not an RTSP camera", func(c *config.Config) { c.Media.Source.Kind = config.SourceTest }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Media.Source.Kind, cfg.Media.Source.URL = config.SourceRTSP, "rtsp://127.0.0.1:1/stream"
			tt.adjust(&cfg)
			require.Empty(t, cfg.Validate())
			a, err := New(Options{Config: cfg})
			require.NoError(t, err)
			_, isGo := a.Source().(*rtspingest.Source)
			_, isGst := a.Source().(*media.Source)
			switch tt.want {
			case clientGo:
				require.True(t, isGo, "the Go RTSP client")
			default:
				require.True(t, isGst, "GStreamer's capture pipeline")
			}
		})
	}
}

func TestRTSPClientConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		adjust func(*config.Config)
		want   string
	}{
		{"unknown", func(c *config.Config) { c.Media.Source.RTSPClient = "ffmpeg" }, `"ffmpeg" is not allowed; use one of auto, go, gstreamer`},
		{"go and rtsps", func(c *config.Config) {
			c.Media.Source.RTSPClient, c.Media.Source.URL = config.RTSPClientGo, "rtsps://cam/stream"
		}, "go reads rtsp:// addresses only"},
		{"go and an encoder", func(c *config.Config) {
			c.Media.Source.RTSPClient, c.Media.Encoder.Kind = config.RTSPClientGo, config.EncoderX264
		}, "go passes the camera's H.264 through"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Media.Source.Kind, cfg.Media.Source.URL = config.SourceRTSP, "rtsp://127.0.0.1:1/stream"
			tt.adjust(&cfg)
			problems := cfg.Validate()
			require.Len(t, problems, 1, "%v", problems)
			require.Equal(t, "media.source.rtsp_client", problems[0].Key)
			require.Contains(t, problems[0].Msg, tt.want)
		})
	}
}

// TestGoRTSPClientLiveView: a real RTSP camera, the agent reading it with the Go client,
// and a pion viewer through localcloud's signaling gets its keyframe and the frames after.
func TestGoRTSPClientLiveView(t *testing.T) {
	cam := rtspCamera(t)
	cloud, a := liveAgent(t, func(c *config.Config) {
		c.Media.Source.Kind, c.Media.Source.URL = config.SourceRTSP, cam.URL()
		c.Media.Analysis.Enabled = false
	})
	require.IsType(t, &rtspingest.Source{}, a.Source())
	v, err := dialViewer(t, cloud, "go-client-viewer")
	require.NoError(t, err)
	_, key := firstKeyframe(t, v, 20*time.Second)
	require.True(t, h264.HasParamSets(key.Data), "the viewer's first frame carries SPS/PPS")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n := 0; n < 30; n++ {
		select {
		case f := <-v.Frames():
			require.NotEmpty(t, f.Data)
		case <-ctx.Done():
			t.Fatalf("the viewer got %d frames after its keyframe", n)
		}
	}
}

// TestGoRTSPClientRecords: local segments are recorded from the Hub (appsrc) when the Go
// client reads the camera, and every segment decodes.
func TestGoRTSPClientRecords(t *testing.T) {
	cam := rtspCamera(t)
	cfg := testConfig(t)
	cfg.Media.Source.Kind, cfg.Media.Source.URL = config.SourceRTSP, cam.URL()
	cfg.Media.Analysis.Enabled = false
	cfg.Recording.Mode, cfg.Recording.Local.Enabled = config.RecordContinuous, true
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	require.IsType(t, &rtspingest.Source{}, a.Source())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return len(a.Recordings()) >= 2 }, 60*time.Second, 50*time.Millisecond, "a second segment starts")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop")
	}
	files, total := recordedFrames(t, cfg.RecordingsDir())
	require.GreaterOrEqual(t, len(files), 2)
	published := int(a.Frames())
	// Units before the first keyframe are not recorded: at most one GOP of the clip.
	require.InDelta(t, published, total, 60, "recorded %d of %d frames", total, published)
}

// TestGoRTSPClientRecordsIntoKVS: both KVS uploaders read the hub, so a camera read by the
// Go client records into localcloud's KVS stream through each of them.
func TestGoRTSPClientRecordsIntoKVS(t *testing.T) {
	for _, uploader := range []string{config.KVSUploaderNative, config.KVSUploaderKVSSink} {
		t.Run(uploader, func(t *testing.T) {
			cam := rtspCamera(t)
			rc, a := kvsAgent(t, func(c *config.Config) {
				c.Media.Source.Kind, c.Media.Source.URL = config.SourceRTSP, cam.URL()
				c.Media.Analysis.Enabled = false
				c.Recording.KVS.Uploader = uploader
			})
			require.IsType(t, &rtspingest.Source{}, a.Source())
			require.Eventually(t, func() bool { return a.Thing() != "" && persisted(rc, a.Thing()) >= 3 }, 60*time.Second, 100*time.Millisecond,
				"fragments persisted in the thing's stream")
			st, err := rc.cloud.KVSStreamStats(a.Thing())
			require.NoError(t, err)
			require.Zero(t, st.Duplicates)
			require.Empty(t, st.Errors)
		})
	}
}
