package rtspingest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func annexB(nalus [][]byte) []byte {
	var b []byte
	for _, n := range nalus {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	return b
}

// checkStream reads n access units from sub and checks them against the clip the camera
// loops: the first is a keyframe, each is the clip's next unit byte for byte (want gives
// the expected bytes of clip unit i), keyframes carry SPS and PPS, and the timeline moves
// forward one frame at a time.
func checkStream(t *testing.T, sub *media.Subscription, clip []rtsptest.AccessUnit, want func(i int) []byte, n int) {
	t.Helper()
	index := map[string]int{}
	for i := range clip {
		index[string(want(i))] = i
	}
	first := next(t, sub, 20*time.Second)
	require.True(t, first.Keyframe, "a subscription starts at a keyframe")
	i, ok := index[string(first.Data)]
	if !ok {
		for _, n := range h264.Split(first.Data) {
			t.Logf("got NAL %s %d bytes", h264.TypeOf(n), len(n))
		}
		for _, n := range h264.Split(want(0)) {
			t.Logf("clip[0] NAL %s %d bytes", h264.TypeOf(n), len(n))
		}
	}
	require.True(t, ok, "the first unit is not one of the clip's")
	prev := first
	keys := 1
	for range n {
		au := next(t, sub, 5*time.Second)
		i = (i + 1) % len(clip)
		require.True(t, bytes.Equal(want(i), au.Data), "unit %d of the clip differs (%d bytes, want %d)", i, len(au.Data), len(want(i)))
		require.Equal(t, h264.IsKeyframe(au.Data), au.Keyframe)
		if au.Keyframe {
			keys++
			require.True(t, h264.HasParamSets(au.Data), "keyframe without SPS/PPS")
		}
		step := au.PTS - prev.PTS
		require.InDelta(t, float64(time.Second/30), float64(step), float64(2*time.Millisecond), "PTS step")
		require.Equal(t, au.PTS, au.DTS)
		prev = au
	}
	require.GreaterOrEqual(t, keys, 2)
}

func TestFramesArriveFromRTSPTestServer(t *testing.T) {
	clip := encodeClip(t, 45, 15, "pattern=ball ! video/x-raw,width=320,height=180")
	srv, err := rtsptest.NewServer(clip, time.Second/30)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(srv.Stop)

	hub := media.NewHub(media.HubOptions{})
	sub := hub.Subscribe(media.SubscribeOptions{Name: "test"})
	s := runSource(t, Options{URL: srv.URL(), Transport: TransportTCP, Hub: hub, BitrateKbps: 500, Framerate: 30})
	checkStream(t, sub, clip, func(i int) []byte { return annexB(clip[i].NALUs) }, 60)

	require.NotEmpty(t, s.SPS())
	frames, restarts := s.Stats()
	require.GreaterOrEqual(t, frames, uint64(61))
	require.Zero(t, restarts)
	require.False(t, s.LastFrame().IsZero())
	require.Equal(t, frames, s.FrameCount())
	require.False(t, s.Encoding())
	require.ErrorIs(t, s.ForceKeyframe(), media.ErrNotEncoding)
	require.ErrorIs(t, s.SetBitrate(100), media.ErrNotEncoding)
	require.Equal(t, 500, s.Bitrate())
	require.Equal(t, 30, s.Framerate())
	require.Contains(t, s.Description(), "Go RTSP client")
}

// TestTransportsAndSDPParameterSets serves a camera that sends SPS/PPS only in the SDP,
// over TCP and over UDP: every keyframe reaches the hub with them in front.
func TestTransportsAndSDPParameterSets(t *testing.T) {
	full := encodeClip(t, 30, 10, "pattern=ball ! video/x-raw,width=320,height=180")
	clip, sps, pps := withoutParamSets(full)
	require.NotEmpty(t, sps)
	want := func(i int) []byte {
		if nalus := clip[i].NALUs; h264.IsKeyframe(annexB(nalus)) {
			// The parameter sets go after an access unit delimiter.
			head := 0
			if h264.TypeOf(nalus[0]) == h264.NALAUD {
				head = 1
			}
			return annexB(append(append(append([][]byte{}, nalus[:head]...), sps, pps), nalus[head:]...))
		}
		return annexB(clip[i].NALUs)
	}
	for _, transport := range []string{TransportTCP, TransportUDP, TransportAuto} {
		t.Run(transport, func(t *testing.T) {
			cam := startCamera(t, clip, cameraOptions{udp: transport != TransportTCP, sps: sps, pps: pps})
			hub := media.NewHub(media.HubOptions{})
			sub := hub.Subscribe(media.SubscribeOptions{Name: "test"})
			core, logs := observer.New(zap.InfoLevel)
			runSource(t, Options{URL: cam.url, Transport: transport, Hub: hub, Log: zap.New(core)})
			checkStream(t, sub, clip, want, 25)
			wantProto := map[string]string{TransportTCP: "TCP", TransportUDP: "UDP", TransportAuto: "UDP"}[transport]
			require.Len(t, logs.FilterMessage("RTSP session playing").FilterField(zap.String("transport", wantProto)).All(), 1)
		})
	}
}

// TestReconnectsAfterServerRestart stops the camera and starts it again on the same port:
// the source reconnects with back-off, counts the restart, and the hub's timeline goes on
// from where it was, starting again at a keyframe.
func TestReconnectsAfterServerRestart(t *testing.T) {
	clip := encodeClip(t, 30, 15, "pattern=ball ! video/x-raw,width=160,height=90")
	srv, err := rtsptest.NewServer(clip, time.Second/30)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(srv.Stop)

	hub := media.NewHub(media.HubOptions{})
	sub := hub.Subscribe(media.SubscribeOptions{Name: "test"})
	s := runSource(t, Options{URL: srv.URL(), Hub: hub, StallTimeout: time.Second, MaxBackoff: 500 * time.Millisecond})
	var last media.AccessUnit
	for range 20 {
		last = next(t, sub, 20*time.Second)
	}
	srv.Stop()
	require.Eventually(t, func() bool { _, r := s.Stats(); return r >= 1 }, 20*time.Second, 10*time.Millisecond, "the lost session is counted")
	require.NotNil(t, s.LastError())
	// Units queued before the session was lost are still delivered; drain them (no more
	// come from the lost session once its restart is counted).
	for sub.Stats().Queued > 0 {
		last = next(t, sub, time.Second)
	}
	require.NoError(t, srv.Start())
	au := next(t, sub, 30*time.Second)
	require.True(t, au.Keyframe, "after a reconnection the stream starts again at a keyframe")
	require.Greater(t, au.PTS, last.PTS, "the timeline goes on across sessions")
	require.GreaterOrEqual(t, srv.Sessions(), 1)
	for range 10 {
		next(t, sub, 5*time.Second)
	}
}

// TestBadAddressesAndCredentials: what the user must fix is said, and no password leaks.
func TestBadAddressesAndCredentials(t *testing.T) {
	t.Run("bad URLs", func(t *testing.T) {
		tests := []struct{ url, want string }{
			{"http://cam/stream", "the Go RTSP client reads rtsp:// addresses only"},
			{"rtsp://user:secret@/stream", "has no host"},
			{"rtsp://user:secret@cam:99999999/x", "expected rtsp://[user:password@]host[:port]/path"},
			{"not a url", "expected rtsp://"},
		}
		for _, tt := range tests {
			_, err := New(Options{URL: tt.url, Hub: media.NewHub(media.HubOptions{})})
			require.ErrorContains(t, err, tt.want, tt.url)
			require.NotContains(t, err.Error(), "secret")
		}
		_, err := New(Options{URL: "rtsp://cam/x", Transport: "quic", Hub: media.NewHub(media.HubOptions{})})
		require.ErrorContains(t, err, `RTSP transport "quic" is not supported: use tcp, udp or auto`)
	})

	clip := encodeClip(t, 15, 15, "pattern=ball ! video/x-raw,width=160,height=90")
	cam := startCamera(t, clip, cameraOptions{user: "admin", pass: "right"})
	withUser := func(user string) string { return strings.Replace(cam.url, "rtsp://", "rtsp://"+user+"@", 1) }
	tests := []struct {
		name, url, want string
	}{
		{"wrong password", withUser("admin:secret"), "the camera refused the user and password (401 Unauthorized): check them in the URL"},
		{"no credentials", cam.url, "the camera asks for a user and password (401 Unauthorized): put them in the URL"},
		{"nobody listening", "rtsp://admin:secret@127.0.0.1:1/stream", "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			s := runSource(t, Options{URL: tt.url, Hub: media.NewHub(media.HubOptions{}), Log: zap.New(core)})
			require.Eventually(t, func() bool { return s.LastError() != nil }, 20*time.Second, 10*time.Millisecond)
			require.ErrorContains(t, s.LastError(), tt.want)
			require.NotContains(t, s.LastError().Error(), "secret")
			require.Zero(t, s.FrameCount())
			for _, e := range logs.All() {
				for _, v := range e.ContextMap() {
					require.NotContains(t, fmt.Sprint(v), "secret", "a log line shows the password")
				}
			}
		})
	}
	t.Run("no H.264", func(t *testing.T) {
		h265 := startCamera(t, clip, cameraOptions{h265: true})
		s := runSource(t, Options{URL: h265.url, Hub: media.NewHub(media.HubOptions{})})
		require.Eventually(t, func() bool { return s.LastError() != nil }, 20*time.Second, 10*time.Millisecond)
		require.ErrorContains(t, s.LastError(), "offers no H.264 video (it offers: H265/90000); the Go RTSP client reads H.264 only")
	})
	t.Run("right password", func(t *testing.T) {
		hub := media.NewHub(media.HubOptions{})
		sub := hub.Subscribe(media.SubscribeOptions{Name: "test"})
		runSource(t, Options{URL: withUser("admin:right"), Hub: hub})
		require.True(t, next(t, sub, 20*time.Second).Keyframe)
	})
}
