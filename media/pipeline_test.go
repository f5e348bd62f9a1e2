package media

import (
	"context"
	"errors"
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

// fakeProbe stands for a machine with the listed elements and V4L2 devices.
type fakeProbe struct {
	elements map[string]bool
	devices  map[string][]string
}

func (f fakeProbe) HasElement(name string) bool { return f.elements[name] }

func (f fakeProbe) DeviceCaps(device string) ([]string, error) {
	caps, ok := f.devices[device]
	if !ok {
		return nil, errors.New("no such device")
	}
	return caps, nil
}

func TestResolveAndDescribe(t *testing.T) {
	media := func(src config.Source, enc string) config.Media {
		m := config.Default().Media
		m.Source = src
		m.Source.Width, m.Source.Height, m.Source.Framerate = 1280, 720, 30
		m.Encoder.Kind = enc
		return m
	}
	// Real device nodes stand in for cameras: ResolvePlan checks that the device exists.
	const cam = "/dev/null"
	pi := fakeProbe{elements: map[string]bool{"v4l2h264enc": true, "libcamerasrc": true}, devices: map[string][]string{cam: {"video/x-raw", "image/jpeg"}}}
	uvcH264 := fakeProbe{devices: map[string][]string{cam: {"image/jpeg", "video/x-h264", "video/x-raw"}}}
	plain := fakeProbe{devices: map[string][]string{cam: {"video/x-raw"}}}

	tests := []struct {
		name       string
		media      config.Media
		probe      fakeProbe
		wantRaw    bool
		wantEncode string
		want       []string
		parse      bool // GStreamer has every element here
	}{
		{"v4l2 raw with x264", media(config.Source{Kind: config.SourceV4L2, Device: cam, Format: config.FormatAuto}, config.EncoderAuto), plain, true, EncodeX264,
			[]string{`v4l2src device="/dev/null"`, "video/x-raw,width=1280,height=720,framerate=30/1", "tee name=raw", "x264enc name=encoder", "key-int-max=60", "bframes=0", "capsfilter name=ratecaps", "appsink name=analysis"}, true},
		{"v4l2 H.264 camera passed through", media(config.Source{Kind: config.SourceV4L2, Device: cam, Format: config.FormatAuto}, config.EncoderAuto), uvcH264, false, EncodePassthrough,
			[]string{`v4l2src device="/dev/null" ! video/x-h264,width=1280,height=720,framerate=30/1`, "h264parse config-interval=-1", "tee name=h264", "avdec_h264", "appsink name=video"}, true},
		{"v4l2 raw on a Raspberry Pi uses v4l2h264enc", media(config.Source{Kind: config.SourceV4L2, Device: cam, Format: config.FormatRaw}, config.EncoderV4L2), pi, true, EncodeV4L2,
			[]string{"v4l2h264enc name=encoder", `extra-controls="controls,repeat_sequence_header=1,video_bitrate=2000000,h264_i_frame_period=60"`, "video/x-h264,level=(string)4"}, false},
		{"libcamera", media(config.Source{Kind: config.SourceLibcamera, Camera: "/base/soc/i2c0mux/imx708@1a"}, config.EncoderX264), pi, true, EncodeX264,
			[]string{`libcamerasrc camera-name="/base/soc/i2c0mux/imx708@1a" ! video/x-raw,width=1280,height=720,framerate=30/1`}, false},
		{"rtsp over tcp", media(config.Source{Kind: config.SourceRTSP, URL: "rtsp://admin:secret@10.0.0.5/live", Transport: config.TransportTCP, Latency: 300 * time.Millisecond}, config.EncoderAuto), plain, false, EncodePassthrough,
			[]string{`rtspsrc location="rtsp://admin:secret@10.0.0.5/live" protocols=tcp latency=300`, "rtph264depay"}, true},
		{"rtsp re-encoded", media(config.Source{Kind: config.SourceRTSP, URL: "rtsp://10.0.0.5/live", Transport: config.TransportUDP}, config.EncoderX264), plain, false, EncodeX264,
			[]string{"protocols=udp+udp-mcast", "avdec_h264 ! videoconvert ! videorate", "x264enc name=encoder"}, true},
		{"custom raw fragment", media(config.Source{Kind: config.SourceCustom, Format: config.FormatRaw, Pipeline: "videotestsrc is-live=true pattern=smpte"}, config.EncoderAuto), plain, true, EncodeX264,
			[]string{"videotestsrc is-live=true pattern=smpte ! tee name=raw"}, true},
		{"test pattern", media(config.Source{Kind: config.SourceTest}, config.EncoderAuto), plain, true, EncodeX264,
			[]string{"videotestsrc is-live=true pattern=ball"}, true},
		{"file", media(config.Source{Kind: config.SourceFile, Path: `/clips/my "best" clip.mp4`}, config.EncoderAuto), plain, false, EncodePassthrough,
			[]string{`filesrc location="/clips/my \"best\" clip.mp4" ! parsebin`, "sync=true", "queue leaky=downstream", "drop=true"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := ResolvePlan(tt.media, tt.probe)
			require.NoError(t, err)
			require.Equal(t, tt.wantRaw, plan.Raw)
			require.Equal(t, tt.wantEncode, plan.Encode)
			desc, err := plan.Description()
			require.NoError(t, err)
			for _, w := range tt.want {
				require.Contains(t, desc, w)
			}
			if tt.parse {
				_, err = gst.Parse(desc, gst.Options{})
				require.NoError(t, err, "GStreamer must parse %s", desc)
			}
		})
	}
}

// TestOfflineDescription: an offline plan neither waits for the clock nor loses analysis frames.
func TestOfflineDescription(t *testing.T) {
	m := config.Default().Media
	m.Source = config.Source{Kind: config.SourceFile, Path: "/clips/a.mp4"}
	m.Analysis.Enabled = true
	plan, err := ResolvePlan(m, fakeProbe{})
	require.NoError(t, err)
	plan.Offline = true
	desc, err := plan.Description()
	require.NoError(t, err)
	for _, live := range []string{"sync=true", "leaky=downstream", "drop=true"} {
		require.NotContains(t, desc, live)
	}
	require.Contains(t, desc, "queue leaky=no")
	_, err = gst.Parse(desc, gst.Options{})
	require.NoError(t, err, "GStreamer must parse %s", desc)
}

func TestResolveErrors(t *testing.T) {
	m := config.Default().Media
	tests := []struct {
		name string
		src  config.Source
		enc  string
		want string
	}{
		{"missing camera", config.Source{Kind: config.SourceV4L2, Device: "/dev/video9", Format: config.FormatAuto}, config.EncoderAuto, "camera /dev/video9: stat /dev/video9: no such file or directory — check media.source.device (edgecam devices lists the cameras)"},
		{"passthrough of raw video", config.Source{Kind: config.SourceTest}, config.EncoderPassthrough, "passthrough: this source delivers raw video"},
		{"libcamera not installed", config.Source{Kind: config.SourceLibcamera}, config.EncoderX264, "install gstreamer1.0-libcamera"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.Source, m.Encoder.Kind = tt.src, tt.enc
			_, err := ResolvePlan(m, fakeProbe{})
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestRealProbeOnThisMachine(t *testing.T) {
	var p gst.Probe
	require.True(t, p.HasElement("x264enc"))
	require.False(t, p.HasElement("nosuchelement"))
	_, err := p.DeviceCaps("/dev/null")
	require.ErrorContains(t, err, "cannot open /dev/null")
}

func TestSegmentDescription(t *testing.T) {
	desc, err := SegmentDescription("/rec", 10*time.Second, config.FormatMP4)
	require.NoError(t, err)
	require.Contains(t, desc, "max-size-time=10000000000")
	require.Contains(t, desc, "muxer-factory=mp4mux")
	require.Contains(t, desc, "fragment-duration=(uint)1000", "fragmented: playable after a power cut")
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
			hub := NewHub(HubOptions{PreRoll: 2 * time.Second})
			dir := filepath.Join(t.TempDir(), "recordings")
			rec, err := NewSegmentRecorder(SegmentOptions{Dir: dir, Segment: 2 * time.Second, Format: format})
			require.NoError(t, err)
			sub := hub.Subscribe(SubscribeOptions{Name: "recorder", QueueFrames: 256})
			src := fileSource(t, clip, false, hub, true)

			ctx, cancel := context.WithTimeout(context.Background(), 5500*time.Millisecond)
			defer cancel()
			recDone := make(chan error, 1)
			go func() { recDone <- rec.Record(context.Background(), sub) }()
			require.NoError(t, src.Run(ctx))
			// The source stopped: once the recorder has taken every queued unit (Close drops
			// what is still queued, and a loaded machine leaves some), let it finish.
			require.Eventually(t, func() bool { return sub.Stats().Queued == 0 }, 30*time.Second, 10*time.Millisecond)
			require.Zero(t, sub.Stats().Dropped)
			sub.Close()
			require.NoError(t, <-recDone)

			published := int(src.FrameCount())
			// Real-time playback: never ahead of the clock; a loaded machine may fall behind.
			require.LessOrEqual(t, published, int(6.5*float64(side.FPS)), "real-time playback")
			require.GreaterOrEqual(t, published, 2*side.FPS, "the clip played")
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

// fileSource plays a file through the real capture pipeline (analysis off).
func fileSource(t *testing.T, path string, loop bool, hub *Hub, realtime bool) *Source {
	t.Helper()
	m := config.Default().Media
	m.Source = config.Source{Kind: config.SourceFile, Path: path, Loop: loop, Width: 640, Height: 360, Framerate: 15}
	m.Analysis.Enabled = false
	plan, err := ResolvePlan(m, gst.Probe{})
	require.NoError(t, err)
	src, err := NewSource(SourceOptions{Plan: plan, Loop: loop, Hub: hub})
	require.NoError(t, err)
	if !realtime {
		src.desc = strings.Replace(src.desc, "sync=true", "sync=false", 1)
	}
	return src
}

func TestSourceLoopsAndKeepsTimelineContinuous(t *testing.T) {
	// A 1 s clip of our own, looped: timestamps must keep increasing across the restarts.
	dir := t.TempDir()
	clip := filepath.Join(dir, "short.mkv")
	gen, err := gst.Parse("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=160,height=90,framerate=10/1 ! "+
		"x264enc key-int-max=5 bframes=0 ! h264parse ! matroskamux ! filesink location="+clip, gst.Options{})
	require.NoError(t, err)
	require.ErrorIs(t, gen.Run(context.Background()), gst.ErrEOS)

	ended := fileSource(t, clip, false, NewHub(HubOptions{}), false)
	require.ErrorIs(t, ended.Run(context.Background()), ErrSourceEnded)
	require.EqualValues(t, 10, ended.FrameCount())

	hub := NewHub(HubOptions{})
	sub := hub.Subscribe(SubscribeOptions{QueueFrames: 1000})
	looped := fileSource(t, clip, true, hub, false)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for looped.FrameCount() < 35 {
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
		if au.Keyframe {
			keys++
		}
		require.Greater(t, au.PTS, last, "timeline goes backwards at unit %d", au.Seq)
		last = au.PTS
	}
	require.GreaterOrEqual(t, keys, 7)
}
