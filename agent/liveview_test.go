package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/kvsviewer"
	"github.com/edgecam/edgecam/internal/webrtcviewer"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

const liveThing = "cam-live-1"

// liveAgent runs an agent with live view against a localcloud, with a test pattern source.
func liveAgent(t testing.TB, adjust func(*config.Config)) (*localcloud.Cloud, *Agent) {
	return liveAgentWith(t, localcloud.Options{AllowSerials: []string{liveThing}}, adjust)
}

func liveAgentWith(t testing.TB, cloudOpts localcloud.Options, adjust func(*config.Config)) (*localcloud.Cloud, *Agent) {
	t.Helper()
	cloud := startCloudWith(t, cloudOpts)
	cfg := cloudConfig(t, cloud)
	cfg.Device.Serial = liveThing
	cfg.WebRTC.STUN = "none"
	if adjust != nil {
		adjust(&cfg)
	}
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg, RequireCloud: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	waitMaster(t, cloud, 20*time.Second)
	return cloud, a
}

func waitMaster(t testing.TB, cloud *localcloud.Cloud, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { m, _ := cloud.SignalingPeers(liveThing); return m }, within, 20*time.Millisecond, "the camera is the channel's master")
}

func dialViewer(t testing.TB, cloud *localcloud.Cloud, id string) (*kvsviewer.Viewer, error) {
	return dialViewerWith(t, cloud, kvsviewer.Options{ClientID: id})
}

func dialViewerWith(t testing.TB, cloud *localcloud.Cloud, o kvsviewer.Options) (*kvsviewer.Viewer, error) {
	t.Helper()
	vc, err := cloud.ViewerConfig()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o.Region, o.ControlPlane, o.Channel = vc.Region, vc.ControlPlaneURL, liveThing
	o.AccessKeyID, o.SecretAccessKey, o.IncludeLoopback = vc.AccessKeyID, vc.SecretAccessKey, true
	v, err := kvsviewer.Dial(ctx, o)
	if err == nil {
		t.Cleanup(func() { v.Close() })
	}
	return v, err
}

func firstKeyframe(t testing.TB, v *kvsviewer.Viewer, within time.Duration) (time.Duration, webrtcviewer.Frame) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	d, f, err := v.FirstKeyframe(ctx)
	require.NoError(t, err)
	return d, f
}

// TestGoViewerThroughLocalcloud: a pion viewer signals through localcloud's KVS stand-in and
// receives H.264 that decodes: the first frame is a keyframe whose SPS parses, then frames
// keep coming without loss.
func TestGoViewerThroughLocalcloud(t *testing.T) {
	cloud, a := liveAgent(t, nil)
	v, err := dialViewer(t, cloud, "go-viewer")
	require.NoError(t, err)
	ttff, key := firstKeyframe(t, v, 15*time.Second)
	t.Logf("offer → first keyframe: %s", ttff)
	w, h, err := webrtcviewer.CheckKeyframe(key)
	require.NoError(t, err)
	require.Equal(t, 320, w)
	require.Equal(t, 180, h)
	require.Eventually(t, func() bool { n, _, _ := v.Stats(); return n >= 45 }, 10*time.Second, 20*time.Millisecond)
	_, broken, _ := v.Stats()
	require.Zero(t, broken)
	require.Equal(t, 1, a.WebRTC().Viewers())
	require.Equal(t, 1, a.StatusNow("running").Viewers)
}

// TestSignalingReconnects: localcloud drops the master's WebSocket, then sends GO_AWAY; each
// time the agent reconnects and a new viewer plays within 5 s.
func TestSignalingReconnects(t *testing.T) {
	cloud, _ := liveAgent(t, nil)
	for i, disrupt := range []func() error{
		func() error { return cloud.DropSignalingMaster(liveThing) },
		func() error { return cloud.SignalingGoAway(liveThing) },
	} {
		start := time.Now()
		require.NoError(t, disrupt())
		// The viewer dials once the master is back (a viewer of a channel without master
		// would wait in vain).
		require.Eventually(t, func() bool {
			m, _ := cloud.SignalingPeers(liveThing)
			return m && time.Since(start) > 50*time.Millisecond
		}, 5*time.Second, 20*time.Millisecond)
		v, err := dialViewer(t, cloud, fmt.Sprintf("after-%d", i))
		require.NoError(t, err)
		firstKeyframe(t, v, 5*time.Second-time.Since(start))
		t.Logf("disruption %d: a new viewer played %s after it", i, time.Since(start))
		require.Less(t, time.Since(start), 5*time.Second)
	}
}

// TestEleventhViewerRefused: ten viewers play, the eleventh is refused, the ten go on.
func TestEleventhViewerRefused(t *testing.T) {
	cloud, a := liveAgent(t, nil)
	var viewers []*kvsviewer.Viewer
	for i := range 10 {
		v, err := dialViewer(t, cloud, fmt.Sprintf("v%02d", i))
		require.NoError(t, err)
		viewers = append(viewers, v)
	}
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Add(1)
		go func() { defer wg.Done(); firstKeyframe(t, v, 20*time.Second) }()
	}
	wg.Wait()
	require.Equal(t, 10, a.WebRTC().Viewers())

	_, err := dialViewer(t, cloud, "v10")
	require.Error(t, err, "an eleventh viewer is refused")
	t.Logf("eleventh viewer: %v", err)

	before := make([]int, len(viewers))
	for i, v := range viewers {
		before[i], _, _ = v.Stats()
	}
	time.Sleep(time.Second)
	for i, v := range viewers {
		n, _, _ := v.Stats()
		require.Greater(t, n, before[i]+10, "viewer %d still plays", i)
	}
}

// TestMalformedSignalingMessagesAreDropped sends the master garbage: each message is
// dropped and counted, the agent keeps serving, and a viewer still plays.
func TestMalformedSignalingMessagesAreDropped(t *testing.T) {
	cloud, a := liveAgent(t, nil)
	for _, raw := range []string{
		`not json`,
		`{"messageType":"SDP_OFFER","senderClientId":"x","messagePayload":"%%%not base64"}`,
		`{"messageType":"SDP_OFFER","senderClientId":"x","messagePayload":"bm90IGpzb24="}`,
		`{"messageType":"ICE_CANDIDATE","senderClientId":"ghost","messagePayload":"eyJjYW5kaWRhdGUiOiJjYW5kaWRhdGU6MSAxIHVkcCAxIDEuMi4zLjQgNSB0eXAgaG9zdCJ9"}`,
		`{"messageType":"WHATEVER"}`,
		`{"messageType":"SDP_OFFER","senderClientId":"big","messagePayload":"` + strings.Repeat("A", 20000) + `"}`,
		`[]`, `{}`, `null`,
	} {
		require.NoError(t, cloud.SendSignalingMasterRaw(liveThing, []byte(raw)))
	}
	// An SDP offer that is valid JSON but not SDP is answered with an error, not a crash.
	require.NoError(t, cloud.SendSignalingMasterRaw(liveThing, []byte(`{"messageType":"SDP_OFFER","senderClientId":"bad-sdp","messagePayload":"eyJ0eXBlIjoib2ZmZXIiLCJzZHAiOiJub3QgYW4gc2RwIn0="}`)))
	v, err := dialViewer(t, cloud, "after-garbage")
	require.NoError(t, err)
	firstKeyframe(t, v, 10*time.Second)
	a.mu.Lock()
	lv := a.live
	a.mu.Unlock()
	require.NotNil(t, lv)
	require.GreaterOrEqual(t, lv.master.Stats().Dropped, uint64(5), "malformed messages are counted as drops")
	require.Equal(t, 1, a.WebRTC().Viewers(), "the bad offer left no session behind")
}

// TestViewerThroughLocalTURN: localcloud runs a real TURN server (pion/turn) and hands out
// time-limited credentials in GetIceServerConfig; a viewer allowed relay candidates only
// plays through it.
func TestViewerThroughLocalTURN(t *testing.T) {
	cloud, _ := liveAgentWith(t, localcloud.Options{AllowSerials: []string{liveThing}, TURN: true}, nil)
	v, err := dialViewerWith(t, cloud, kvsviewer.Options{ClientID: "relay-only", RelayOnly: true})
	require.NoError(t, err)
	require.NotEmpty(t, v.ICEServers)
	turn := v.ICEServers[0]
	require.Contains(t, turn.URLs[0], "turn:127.0.0.1:")
	require.NotEmpty(t, turn.Username)
	require.NotEmpty(t, turn.Credential)
	require.Equal(t, 300*time.Second, turn.TTL)
	firstKeyframe(t, v, 15*time.Second)
	require.Eventually(t, func() bool { n, _, _ := v.Stats(); return n >= 30 }, 10*time.Second, 20*time.Millisecond)
	require.NotEmpty(t, cloud.STUNURL())
}

// TestViewerBandwidthLowersEncoderBitrate: a viewer reports 400 kbit/s (REMB); the agent,
// which encodes, lowers the encoder to fit (with headroom, not below the floor), and goes
// back to full quality when the viewer leaves.
func TestViewerBandwidthLowersEncoderBitrate(t *testing.T) {
	cloud, a := liveAgent(t, func(c *config.Config) { c.WebRTC.MinBitrateKbps = 300 })
	require.True(t, a.Source().Encoding())
	full := a.Source().Bitrate()
	v, err := dialViewer(t, cloud, "slow-link")
	require.NoError(t, err)
	firstKeyframe(t, v, 10*time.Second)
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, tr := range v.Transceivers() {
				if r := tr.Receiver(); r != nil && r.Track() != nil {
					_ = v.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 400_000, SSRCs: []uint32{uint32(r.Track().SSRC())}}})
				}
			}
		}
	}()
	require.Eventually(t, func() bool { return a.Source().Bitrate() == 340 }, 10*time.Second, 50*time.Millisecond,
		"85%% of the viewer's 400 kbit/s; full was %d", full)
	close(stop)
	require.NoError(t, v.Close())
	require.Eventually(t, func() bool { return a.Source().Bitrate() == full }, 20*time.Second, 100*time.Millisecond, "back to full quality")
}
