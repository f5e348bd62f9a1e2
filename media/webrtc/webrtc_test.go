package webrtc

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/synth"
	"github.com/edgecam/edgecam/internal/webrtcviewer"
	"github.com/edgecam/edgecam/media"
	"github.com/pion/rtcp"
	pion "github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// liveHub runs the GStreamer-free synthetic H.264 source (mediadevices + openh264) into a Hub.
func liveHub(t *testing.T) *media.Hub {
	t.Helper()
	hub := media.NewHub(media.HubOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- synth.Run(ctx, hub, synth.Options{GOP: 2 * time.Second, BitrateKbps: 800}) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done); hub.Close() })
	require.Eventually(t, func() bool { return hub.Stats().RingFrames > 0 }, 10*time.Second, 10*time.Millisecond)
	return hub
}

// connect runs offer/answer and trickle ICE between a Go viewer and the server.
func connect(t *testing.T, s *Server, id string) (*webrtcviewer.Viewer, error) {
	t.Helper()
	return connectWith(t, s, id, webrtcviewer.Options{IncludeLoopback: true})
}

// connectWith is connect with the viewer's options.
func connectWith(t testing.TB, s *Server, id string, vopts webrtcviewer.Options) (*webrtcviewer.Viewer, error) {
	t.Helper()
	v, err := webrtcviewer.New(vopts)
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	offer, err := v.Offer()
	require.NoError(t, err)
	// The camera's candidates can arrive before its answer is applied: hold them until then.
	var mu sync.Mutex
	var early []Candidate
	answered := false
	add := func(c Candidate) {
		_ = v.AddCandidate(pion.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
	}
	answer, err := s.HandleOffer(context.Background(), id, offer, func(c Candidate) {
		mu.Lock()
		defer mu.Unlock()
		if !answered {
			early = append(early, c)
			return
		}
		add(c)
	})
	if err != nil {
		return nil, err
	}
	require.Contains(t, answer, "packetization-mode=1")
	require.NoError(t, v.SetAnswer(answer))
	mu.Lock()
	answered = true
	for _, c := range early {
		add(c)
	}
	mu.Unlock()
	v.OnCandidate(func(c pion.ICECandidateInit) {
		_ = s.AddCandidate(id, Candidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
	})
	return v, nil
}

func TestViewerReceivesDecodableH264(t *testing.T) {
	hub := liveHub(t)
	var keyframeRequests atomic.Int32
	s, err := NewServer(Options{Hub: hub, IncludeLoopback: true, BandwidthEstimation: true, RequestKeyframe: func() { keyframeRequests.Add(1) }})
	require.NoError(t, err)
	defer s.Close()

	v, err := connect(t, s, "viewer-1")
	require.NoError(t, err)
	var first webrtcviewer.Frame
	select {
	case first = <-v.Frames():
	case <-time.After(15 * time.Second):
		t.Fatal("no frame within 15 s")
	}
	require.True(t, first.Keyframe, "the first frame is the current GOP's keyframe")
	w, h, err := webrtcviewer.CheckKeyframe(first)
	require.NoError(t, err)
	require.Equal(t, synth.Width, w)
	require.Equal(t, synth.Height, h)
	require.Eventually(t, func() bool { n, _, _ := v.Stats(); return n >= 60 }, 10*time.Second, 20*time.Millisecond)
	_, broken, _ := v.Stats()
	require.Zero(t, broken, "no lost or undecodable frames on loopback")

	// A PLI from the viewer reaches the encoder as a keyframe request.
	require.Eventually(t, func() bool {
		for _, tr := range v.Transceivers() {
			if r := tr.Receiver(); r != nil && r.Track() != nil {
				_ = v.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(r.Track().SSRC())}})
			}
		}
		return keyframeRequests.Load() > 0
	}, 5*time.Second, 100*time.Millisecond)

	st := s.Stats()
	require.Len(t, st, 1)
	require.Equal(t, "connected", st[0].State)
	require.Positive(t, st[0].BytesSent)
	require.Eventually(t, func() bool { kbps, ok := s.EstimatedBitrate(); return ok && kbps > 0 }, 10*time.Second, 100*time.Millisecond,
		"a bandwidth estimate from TWCC or REMB")
}

func TestViewerCapAndCleanup(t *testing.T) {
	hub := liveHub(t)
	s, err := NewServer(Options{Hub: hub, IncludeLoopback: true, MaxViewers: 2})
	require.NoError(t, err)
	defer s.Close()
	v1, err := connect(t, s, "a")
	require.NoError(t, err)
	_, err = connect(t, s, "b")
	require.NoError(t, err)
	_, err = connect(t, s, "c")
	require.ErrorIs(t, err, ErrTooManyViewers)
	require.Equal(t, 2, s.Viewers())

	// The same viewer offering again replaces its session rather than counting twice.
	_, err = connect(t, s, "b")
	require.NoError(t, err)
	require.Equal(t, 2, s.Viewers())

	require.Eventually(t, func() bool { return v1.State() == pion.PeerConnectionStateConnected }, 15*time.Second, 20*time.Millisecond)
	require.NoError(t, v1.Close())
	require.Eventually(t, func() bool { return s.Viewers() == 1 }, 20*time.Second, 50*time.Millisecond, "a gone viewer is removed")
	_, err = connect(t, s, "c")
	require.NoError(t, err, "its place is free again")
}

// TestSingleUDPPort multiplexes every viewer's ICE over one UDP port.
func TestSingleUDPPort(t *testing.T) {
	hub := liveHub(t)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	port := conn.LocalAddr().(*net.UDPAddr).Port
	conn.Close()
	s, err := NewServer(Options{Hub: hub, IncludeLoopback: true, UDPPort: port})
	require.NoError(t, err)
	defer s.Close()
	var ports []string
	var mu sync.Mutex
	for _, id := range []string{"a", "b"} {
		v, err := webrtcviewer.New(webrtcviewer.Options{IncludeLoopback: true})
		require.NoError(t, err)
		defer v.Close()
		offer, err := v.Offer()
		require.NoError(t, err)
		answer, err := s.HandleOffer(context.Background(), id, offer, func(c Candidate) {
			mu.Lock()
			ports = append(ports, strings.Fields(c.Candidate)[5])
			mu.Unlock()
		})
		require.NoError(t, err)
		require.NoError(t, v.SetAnswer(answer))
		v.OnCandidate(func(c pion.ICECandidateInit) {
			_ = s.AddCandidate(id, Candidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
		})
		select {
		case <-v.Frames():
		case <-time.After(15 * time.Second):
			t.Fatal("no frame through the single UDP port")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, ports)
	for _, p := range ports {
		require.Equal(t, strconv.Itoa(port), p, "every host candidate uses the one port")
	}
}
