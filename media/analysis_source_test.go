package media

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/stretchr/testify/require"
)

func TestAnalysisSourceDescription(t *testing.T) {
	hw := Decoder{Kind: DecodeV4L2, Element: "v4l2h264dec"}
	tests := []struct {
		name    string
		uri     string
		decoder Decoder
		want    []string
		parse   bool // every element exists here
	}{
		{"rtsp substream, software", "rtsp://admin:secret@10.0.0.5/sub", Decoder{Kind: DecodeSoftware, Element: "avdec_h264"},
			[]string{`rtspsrc location="rtsp://admin:secret@10.0.0.5/sub" protocols=tcp latency=0`, "rtph264depay ! h264parse ! avdec_h264 max-threads=1 ! videorate drop-only=true max-rate=5 ! videoconvert ! videoscale",
				"format=GRAY8,width=320,height=180", "appsink name=analysis sync=false max-buffers=1 drop=true"}, true},
		{"rtsp substream, hardware", "rtsps://cam/sub", hw, []string{"h264parse ! v4l2h264dec ! videorate"}, false},
		{"file", "file:///clips/a b.mp4", Decoder{}, []string{`filesrc location="/clips/a b.mp4" ! parsebin ! h264parse ! avdec_h264 max-threads=1`, "sync=true"}, true},
		{"device", "/dev/video1", hw, []string{`v4l2src device="/dev/video1" ! video/x-raw ! videorate`}, true},
		{"device URI", "v4l2:///dev/video2", Decoder{}, []string{`v4l2src device="/dev/video2"`}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewAnalysisSource(AnalysisSourceOptions{URI: tt.uri, Width: 320, Height: 180, Framerate: 5, Decoder: tt.decoder})
			require.NoError(t, err)
			for _, w := range tt.want {
				require.Contains(t, s.desc, w)
			}
			require.NotContains(t, s.Description(), "secret")
			if tt.parse {
				_, err := gst.Parse(s.desc, gst.Options{})
				require.NoError(t, err, "GStreamer must parse %s", s.desc)
			}
		})
	}
	_, err := NewAnalysisSource(AnalysisSourceOptions{URI: "v4l2://", Width: 320, Height: 180, Framerate: 5})
	require.ErrorContains(t, err, "no V4L2 device named")
	_, err = NewAnalysisSource(AnalysisSourceOptions{URI: "rtsp://cam/sub", Width: 320, Height: 0, Framerate: 5})
	require.ErrorContains(t, err, "must be positive")
}

// checkerProbe is a machine whose hardware decoders exist and either work or not (no such
// device exists here: the real check runs in TestCheckDecoder).
type checkerProbe struct {
	fakeProbe
	broken map[string]error
}

func (c checkerProbe) DecoderWorks(element string) error { return c.broken[element] }

func TestResolveDecoder(t *testing.T) {
	sw := map[string]bool{"avdec_h264": true}
	swOpen := map[string]bool{"avdec_h264": true, "openh264dec": true}
	pi := map[string]bool{"avdec_h264": true, "v4l2h264dec": true, "openh264dec": true}
	rk := map[string]bool{"avdec_h264": true, "v4l2slh264dec": true}
	tests := []struct {
		name     string
		kind     string
		probe    Probe
		lowRes   bool   // a substream
		want     string // element; empty: an error
		wantKind string
		wantErr  string
		reason   string
	}{
		{"auto without hardware", DecodeAuto, fakeProbe{elements: sw}, false, "avdec_h264", DecodeSoftware, "", "no hardware H.264 decoder"},
		{"auto without hardware, main stream", DecodeAuto, fakeProbe{elements: swOpen}, false, "avdec_h264", DecodeSoftware, "", "no hardware H.264 decoder"},
		{"auto without hardware, substream", DecodeAuto, fakeProbe{elements: swOpen}, true, "openh264dec", DecodeSoftware, "", "openh264 for a low-resolution substream"},
		{"auto without hardware or openh264, substream", DecodeAuto, fakeProbe{elements: sw}, true, "avdec_h264", DecodeSoftware, "", ""},
		{"auto on a Pi", DecodeAuto, fakeProbe{elements: pi}, false, "v4l2h264dec", DecodeV4L2, "", "hardware decoder v4l2h264dec"},
		{"auto on a Pi, substream", DecodeAuto, fakeProbe{elements: pi}, true, "v4l2h264dec", DecodeV4L2, "", ""},
		{"auto on a stateless decoder", DecodeAuto, fakeProbe{elements: rk}, false, "v4l2slh264dec", DecodeV4L2, "", ""},
		{"auto with a broken hardware decoder", DecodeAuto, checkerProbe{fakeProbe{elements: pi}, map[string]error{"v4l2h264dec": errors.New("device busy")}},
			false, "avdec_h264", DecodeSoftware, "", "failed its test picture: [v4l2h264dec: device busy]"},
		{"software for a substream", DecodeSoftware, fakeProbe{elements: swOpen}, true, "avdec_h264", DecodeSoftware, "", "media.analysis.decoder software"},
		{"openh264", DecodeOpenH264, fakeProbe{elements: swOpen}, false, "openh264dec", DecodeSoftware, "", "media.analysis.decoder openh264"},
		{"openh264 missing", DecodeOpenH264, fakeProbe{elements: sw}, false, "", "", "media.analysis.decoder openh264: openh264dec is not installed", ""},
		{"software on a Pi", DecodeSoftware, fakeProbe{elements: pi}, false, "avdec_h264", DecodeSoftware, "", "media.analysis.decoder software"},
		{"v4l2 on a Pi", DecodeV4L2, fakeProbe{elements: pi}, false, "v4l2h264dec", DecodeV4L2, "", ""},
		{"v4l2 without hardware", DecodeV4L2, fakeProbe{elements: sw}, false, "", "", "media.analysis.decoder v4l2: no V4L2 H.264 decoder here", ""},
		{"v4l2 broken", DecodeV4L2, checkerProbe{fakeProbe{elements: pi}, map[string]error{"v4l2h264dec": errors.New("no firmware")}},
			false, "", "", "the hardware decoder does not decode ([v4l2h264dec: no firmware]); use auto or software", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ResolveDecoder(tt.kind, tt.probe, tt.lowRes)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, d.Element)
			require.Equal(t, tt.wantKind, d.Kind)
			require.Contains(t, d.Reason, tt.reason)
		})
	}
}

// TestResolveDecoderInProcess: with the real probe, openh264 stands for libopenh264 called in
// process when the library loads, whether or not GStreamer's openh264dec is there; without
// the library it takes openh264dec, and without either avdec_h264.
func TestResolveDecoderInProcess(t *testing.T) {
	if err := inProcessOpenH264(); err != nil {
		t.Skip(err)
	}
	defer func(f func() error) { inProcessOpenH264 = f }(inProcessOpenH264)
	tests := []struct {
		name string
		kind string
		lib  error // what loading libopenh264 says
		want string
	}{
		{"auto, substream, libopenh264", DecodeAuto, nil, "openh264dec"},
		{"openh264, libopenh264", DecodeOpenH264, nil, "openh264dec"},
		{"auto, substream, openh264dec only", DecodeAuto, errors.New("not installed"), map[bool]string{true: "openh264dec", false: "avdec_h264"}[gst.HasElement("openh264dec")]},
		{"software, substream", DecodeSoftware, nil, "avdec_h264"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inProcessOpenH264 = func() error { return tt.lib }
			d, err := ResolveDecoder(tt.kind, gst.Probe{}, true)
			require.NoError(t, err)
			require.Equal(t, tt.want, d.Element)
		})
	}
}

// TestCheckDecoder decodes the embedded test picture with real decoders.
func TestCheckDecoder(t *testing.T) {
	require.NoError(t, CheckDecoder("avdec_h264"))
	require.Error(t, CheckDecoder("jpegdec"), "a decoder of something else decodes no H.264")
	d, err := ResolveDecoder(DecodeAuto, gst.Probe{}, false)
	require.NoError(t, err)
	require.Equal(t, "avdec_h264", d.Element, "this machine has no hardware decoder")
	if gst.HasElement("openh264dec") {
		require.NoError(t, CheckDecoder("openh264dec"))
	}
}

// TestPlanAnalysisSource: with a separate analysis source the capture pipeline has no
// analysis branch (no decoder, no tee), and the decoder is resolved for the source.
func TestPlanAnalysisSource(t *testing.T) {
	m := config.Default().Media
	m.Source = config.Source{Kind: config.SourceRTSP, URL: "rtsp://cam/main", Transport: config.TransportTCP}
	m.Analysis.Source = "rtsp://cam/sub"
	plan, err := ResolvePlan(m, fakeProbe{elements: map[string]bool{"avdec_h264": true}})
	require.NoError(t, err)
	require.False(t, plan.AnalyseMain())
	require.Equal(t, "avdec_h264", plan.Decoder.Element)
	desc, err := plan.Description()
	require.NoError(t, err)
	for _, absent := range []string{"avdec_h264", "tee", AnalysisSink} {
		require.NotContains(t, desc, absent)
	}

	m.Analysis.Source = "/dev/video1" // raw: nothing to decode, libav or not
	plan, err = ResolvePlan(m, fakeProbe{})
	require.NoError(t, err)
	require.Empty(t, plan.Decoder.Element)

	m.Analysis.Source = ""
	plan, err = ResolvePlan(m, fakeProbe{elements: map[string]bool{"avdec_h264": true}})
	require.NoError(t, err)
	require.True(t, plan.AnalyseMain())
	desc, err = plan.Description()
	require.NoError(t, err)
	require.Contains(t, desc, "avdec_h264 max-threads=1 ! videorate")
}

// waitState waits for the source to reach a state, on its Changed signal.
func waitState(t *testing.T, s *AnalysisSource, want AnalysisState, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for s.Health().State != want {
		select {
		case <-s.Changed():
		case <-deadline:
			t.Fatalf("analysis source still %s after %s, want %s (%+v)", s.Health().State, within, want, s.Health())
		}
	}
}

// TestAnalysisSourceSubstream: a real RTSP server serves a 640x360 15 fps substream; the
// source delivers 320x180 GRAY8 frames at the analysis rate, goes down when the server
// goes away and recovers when it comes back, by itself.
func TestAnalysisSourceSubstream(t *testing.T) {
	clipPath, _ := testclip.Path(t, testclip.Ball)
	clip, err := rtsptest.ReadClip(clipPath)
	require.NoError(t, err)
	srv, err := rtsptest.NewServer(clip, time.Second/15)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	defer srv.Stop()

	d, err := ResolveDecoder(DecodeAuto, gst.Probe{}, true)
	require.NoError(t, err)
	s, err := NewAnalysisSource(AnalysisSourceOptions{URI: srv.URL(), Width: 320, Height: 180, Framerate: 5, Decoder: d,
		StallTimeout: time.Second, MaxBackoff: 2 * time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	frames := func(n int) []Frame {
		var got []Frame
		timeout := time.After(30 * time.Second)
		for len(got) < n {
			select {
			case f := <-s.Frames():
				got = append(got, f)
			case <-timeout:
				t.Fatalf("%d of %d analysis frames in 30 s (%+v)", len(got), n, s.Health())
			}
		}
		return got
	}
	got := frames(20)
	waitState(t, s, AnalysisUp, 10*time.Second)
	for _, f := range got {
		require.Equal(t, 320, f.Width)
		require.Equal(t, 180, f.Height)
		require.Len(t, f.Data, f.Stride*f.Height)
		require.GreaterOrEqual(t, f.Stride, 320)
	}
	// PTS is the stream's: once running (videorate lets the first few through at the
	// stream's rate), 6 frames at 5 fps span about 1 s of it (a frame of the 15 fps grid
	// more or less, as RTP timestamps jitter), where the substream's 15 fps would span a
	// third of that.
	last := got[len(got)-6:]
	require.GreaterOrEqual(t, last[5].PTS-last[0].PTS, 800*time.Millisecond)

	srv.Stop() // the camera's substream goes away
	waitState(t, s, AnalysisDown, 20*time.Second)
	require.NotEmpty(t, s.Health().Reason)
	require.NoError(t, srv.Start())
	waitState(t, s, AnalysisUp, 30*time.Second)
	frames(3)
	require.Positive(t, s.Health().Restarts)
}

// TestAnalysisSourceSetupError: a source that cannot be built is down and says why.
func TestAnalysisSourceSetupError(t *testing.T) {
	s, err := NewAnalysisSource(AnalysisSourceOptions{URI: "rtsp://127.0.0.1:1/sub", Width: 320, Height: 180, Framerate: 5,
		Decoder: Decoder{Kind: DecodeV4L2, Element: "nosuchdecoder"}})
	require.NoError(t, err)
	err = s.Run(context.Background())
	require.ErrorContains(t, err, "nosuchdecoder")
	require.Equal(t, AnalysisDown, s.Health().State)
}
