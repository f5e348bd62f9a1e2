package media_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/edgecam/edgecam/media/openh264"
	"github.com/edgecam/edgecam/media/rtspingest"
	"github.com/stretchr/testify/require"
)

// waitAnalysis waits for an analysis source to reach a state, on its Changed signal.
func waitAnalysis(t *testing.T, s *media.AnalysisSource, want media.AnalysisState, within time.Duration) {
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

// TestAnalysisSourceGoClient: a camera's substream (a real RTSP server, 640x360 at 15 fps)
// read by the Go RTSP client into a Hub of its own and decoded from its access units, in
// process with libopenh264 or through GStreamer's appsrc (avdec_h264): 320x180 GRAY8 frames
// at the analysis rate on the stream's timeline; the source goes down when the server
// goes away, says why, and recovers by itself when it is back.
func TestAnalysisSourceGoClient(t *testing.T) {
	tests := []struct {
		name    string
		decoder media.Decoder
		want    string // Decoder().Element
		desc    string
	}{
		{"libopenh264 in process", media.Decoder{Kind: media.DecodeSoftware, Element: "openh264dec"}, media.InProcessOpenH264, "libopenh264"},
		{"avdec_h264 from appsrc", media.Decoder{Kind: media.DecodeSoftware, Element: "avdec_h264"}, "avdec_h264", "appsrc name=analysisunits"},
	}
	clipPath, _ := testclip.Path(t, testclip.Ball)
	clip, err := rtsptest.ReadClip(clipPath)
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == media.InProcessOpenH264 && openh264.Load() != nil {
				t.Skip(openh264.Load())
			}
			srv, err := rtsptest.NewServer(clip, time.Second/15)
			require.NoError(t, err)
			require.NoError(t, srv.Start())
			defer srv.Stop()

			hub := media.NewHub(media.HubOptions{})
			url := strings.Replace(srv.URL(), "rtsp://", "rtsp://cam:secret@", 1)
			ing, err := rtspingest.New(rtspingest.Options{URL: url, Hub: hub, StallTimeout: time.Second, MaxBackoff: 2 * time.Second})
			require.NoError(t, err)
			s, err := media.NewAnalysisSource(media.AnalysisSourceOptions{URI: url, Width: 320, Height: 180, Framerate: 5,
				Decoder: tt.decoder, StallTimeout: time.Second, MaxBackoff: 2 * time.Second,
				Units: &media.AnalysisUnits{Hub: hub, Ingest: ing}})
			require.NoError(t, err)
			require.Equal(t, tt.want, s.Decoder().Element)
			require.Contains(t, s.Description(), tt.desc)
			require.NotContains(t, s.Description(), "secret")
			if tt.want != media.InProcessOpenH264 {
				_, err := gst.Parse(s.Description(), gst.Options{})
				require.NoError(t, err)
			}

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); require.NoError(t, <-done) }()

			frames := func(n int) []media.Frame {
				var got []media.Frame
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
			waitAnalysis(t, s, media.AnalysisUp, 10*time.Second)
			for _, f := range got {
				require.Equal(t, 320, f.Width)
				require.Equal(t, 180, f.Height)
				require.GreaterOrEqual(t, f.Stride, 320)
				require.Len(t, f.Data, f.Stride*f.Height)
			}
			// At most 5 a second of the stream's time, where the substream has 15: 6
			// frames span about 1 s (a frame of the 15 fps grid more or less).
			last := got[len(got)-6:]
			require.GreaterOrEqual(t, last[5].PTS-last[0].PTS, 800*time.Millisecond)
			require.LessOrEqual(t, last[5].PTS-last[0].PTS, 1200*time.Millisecond)

			srv.Stop() // the camera's substream goes away
			waitAnalysis(t, s, media.AnalysisDown, 20*time.Second)
			require.NotEmpty(t, s.Health().Reason)
			require.NotContains(t, s.Health().Reason, "secret")
			require.NoError(t, srv.Start())
			waitAnalysis(t, s, media.AnalysisUp, 30*time.Second)
			frames(3)
			require.Positive(t, s.Health().Restarts)
		})
	}
}

// TestAnalysisSourceFromMainHub: analysis of the main stream's own Hub (the main stream read
// by the Go RTSP client): the capture side publishes access units and the analysis source
// decodes them, every frame (avdec_h264 through appsrc, as auto picks for the main stream)
// or keyframes only (also in process with libopenh264, whose picture of a keyframe must
// come at once, not with the next keyframe a GOP later); it stops cleanly with its context.
func TestAnalysisSourceFromMainHub(t *testing.T) {
	clipPath, _ := testclip.Path(t, testclip.Ball) // 15 fps, a keyframe every 2 s
	clip, err := rtsptest.ReadClip(clipPath)
	require.NoError(t, err)
	avdec := media.Decoder{Kind: media.DecodeSoftware, Element: "avdec_h264"}
	openh := media.Decoder{Kind: media.DecodeSoftware, Element: "openh264dec"}
	tests := []struct {
		name          string
		decoder       media.Decoder
		keyframesOnly bool
	}{
		{"every frame, avdec_h264", avdec, false},
		{"keyframes only, avdec_h264", avdec, true},
		{"keyframes only, libopenh264", openh, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := media.NewHub(media.HubOptions{})
			s, err := media.NewAnalysisSource(media.AnalysisSourceOptions{URI: "main", Width: 160, Height: 90, Framerate: 5,
				Decoder: tt.decoder, KeyframesOnly: tt.keyframesOnly, StallTimeout: 10 * time.Second,
				Units: &media.AnalysisUnits{Hub: hub}})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()

			var newest atomic.Int64 // PTS of the newest unit published
			keyframes := map[time.Duration]bool{}
			for i, au := range clip {
				if h264.IsKeyframe(annexB(au)) {
					keyframes[time.Duration(i)*time.Second/15] = true
				}
			}
			publishCtx, stopPublishing := context.WithCancel(ctx)
			published := make(chan struct{})
			go func() { // the capture side: the clip in real time, from its first keyframe
				defer close(published)
				tick := time.NewTicker(time.Second / 15)
				defer tick.Stop()
				for i := 0; ; i++ {
					data := annexB(clip[i%len(clip)])
					pts := time.Duration(i) * time.Second / 15
					hub.Publish(media.AccessUnit{Data: data, PTS: pts, DTS: pts, Duration: time.Second / 15, Keyframe: h264.IsKeyframe(data)})
					newest.Store(int64(pts))
					select {
					case <-publishCtx.Done():
						return
					case <-tick.C:
					}
				}
			}()
			want := 5
			if tt.keyframesOnly {
				want = 2
			}
			for n := 0; n < want; {
				select {
				case f := <-s.Frames():
					require.Equal(t, 160, f.Width)
					require.Equal(t, 90, f.Height)
					if tt.keyframesOnly {
						require.True(t, keyframes[f.PTS], "frame at %s: only keyframes are decoded", f.PTS)
						require.Less(t, time.Duration(newest.Load())-f.PTS, time.Second,
							"the keyframe at %s is analysed at once, not a GOP later", f.PTS)
					}
					n++
				case <-time.After(30 * time.Second):
					t.Fatalf("%d analysis frames in 30 s (%+v)", n, s.Health())
				}
			}
			waitAnalysis(t, s, media.AnalysisUp, 10*time.Second)
			stopPublishing()
			<-published
			cancel()
			require.NoError(t, <-done)
		})
	}
}

// annexB joins a clip unit's NAL units with start codes.
func annexB(au rtsptest.AccessUnit) []byte {
	var data []byte
	for _, nal := range au.NALUs {
		data = append(append(data, 0, 0, 0, 1), nal...)
	}
	return data
}

// TestAnalysisSourceSkipsStaleUnits: the GOP a hub kept from before an outage is not
// analysed when a run starts (the source would look alive while the camera is gone): the
// source stays down with that GOP, and comes up with the next fresh keyframe.
func TestAnalysisSourceSkipsStaleUnits(t *testing.T) {
	clipPath, _ := testclip.Path(t, testclip.Ball)
	clip, err := rtsptest.ReadClip(clipPath)
	require.NoError(t, err)
	tests := []struct {
		name    string
		decoder media.Decoder
	}{
		{"libopenh264 in process", media.Decoder{Kind: media.DecodeSoftware, Element: "openh264dec"}},
		{"avdec_h264 from appsrc", media.Decoder{Kind: media.DecodeSoftware, Element: "avdec_h264"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := media.NewHub(media.HubOptions{})
			old := time.Now().Add(-time.Minute)
			for i := range 30 { // two GOPs from a minute ago
				pts := time.Duration(i) * time.Second / 15
				hub.Publish(media.AccessUnit{Data: annexB(clip[i]), PTS: pts, DTS: pts, Duration: time.Second / 15,
					Keyframe: h264.IsKeyframe(annexB(clip[i])), Wall: old.Add(pts)})
			}
			s, err := media.NewAnalysisSource(media.AnalysisSourceOptions{URI: "main", Width: 160, Height: 90, Framerate: 5,
				Decoder: tt.decoder, StallTimeout: time.Second, MaxBackoff: time.Second, Units: &media.AnalysisUnits{Hub: hub}})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); require.NoError(t, <-done) }()

			waitAnalysis(t, s, media.AnalysisDown, 10*time.Second)
			require.Zero(t, s.Health().Frames, "the stale GOP gives no analysis frame")
			select {
			case f := <-s.Frames():
				t.Fatalf("a frame of the stale GOP was analysed (PTS %s)", f.PTS)
			default:
			}

			for i := 30; i < 60; i++ { // the camera is back: fresh units, from a keyframe
				pts := time.Duration(i) * time.Second / 15
				hub.Publish(media.AccessUnit{Data: annexB(clip[i]), PTS: pts, DTS: pts, Duration: time.Second / 15,
					Keyframe: h264.IsKeyframe(annexB(clip[i]))})
			}
			waitAnalysis(t, s, media.AnalysisUp, 20*time.Second)
		})
	}
}
