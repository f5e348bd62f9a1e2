package signaling_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/coder/websocket"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/edgecam/edgecam/signaling"
	"github.com/stretchr/testify/require"
)

// startCloud runs localcloud (its real KVS signaling stand-in) on 127.0.0.1.
func startCloud(t *testing.T, opts localcloud.Options) *localcloud.Cloud {
	t.Helper()
	opts.Dir = t.TempDir()
	c, err := localcloud.Open(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); c.Close() })
	require.NoError(t, c.Start(ctx))
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// deviceCredentials issues fresh temporary credentials (with a session token) on every call,
// as the IoT credentials provider would, and counts the calls.
func deviceCredentials(c *localcloud.Cloud, calls *atomic.Int64) aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		calls.Add(1)
		ic := c.IssueCredentials("BCM2835-00000000b211cf11")
		return aws.Credentials{AccessKeyID: ic.AccessKeyID, SecretAccessKey: ic.SecretAccessKey, SessionToken: ic.SessionToken, CanExpire: true, Expires: ic.Expiration}, nil
	})
}

func newClient(t *testing.T, c *localcloud.Cloud, opts signaling.ClientOptions) *signaling.Client {
	t.Helper()
	opts.Region = c.Region()
	if opts.Endpoint == "" {
		opts.Endpoint = c.KVSEndpoint()
	}
	if opts.Credentials == nil {
		opts.Credentials = deviceCredentials(c, new(atomic.Int64))
	}
	if opts.STUNURL == "" {
		opts.STUNURL = "stun:127.0.0.1:3478"
	}
	cl, err := signaling.NewClient(opts)
	require.NoError(t, err)
	return cl
}

// answering is a master's handler that answers every offer and returns a candidate, as the
// WebRTC side will, and records what it got.
type answering struct {
	t      *testing.T
	master *signaling.Master
	got    chan signaling.Message
}

func (a *answering) handle(m signaling.Message) {
	a.got <- m
	if m.Type != signaling.TypeSDPOffer {
		return
	}
	ctx := context.Background()
	if err := a.master.SendAnswer(ctx, m.SenderClientID, "v=0\r\ns=answer for "+m.SenderClientID+"\r\n"); err != nil {
		a.t.Errorf("SendAnswer: %v", err)
	}
	mid, idx := "0", uint16(0)
	if err := a.master.SendCandidate(ctx, m.SenderClientID, signaling.ICECandidate{Candidate: "candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host", SDPMid: &mid, SDPMLineIndex: &idx}); err != nil {
		a.t.Errorf("SendCandidate: %v", err)
	}
}

func (a *answering) next() signaling.Message {
	a.t.Helper()
	select {
	case m := <-a.got:
		return m
	case <-time.After(5 * time.Second):
		a.t.Fatal("the master's handler got nothing within 5 s")
		return signaling.Message{}
	}
}

// runMaster starts a master with an answering handler and waits until it is connected.
func runMaster(t *testing.T, opts signaling.MasterOptions) (*signaling.Master, *answering, context.CancelFunc, <-chan error) {
	t.Helper()
	a := &answering{t: t, got: make(chan signaling.Message, 64)}
	if opts.OnMessage == nil {
		opts.OnMessage = a.handle
	}
	m, err := signaling.NewMaster(opts)
	require.NoError(t, err)
	a.master = m
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() { errc <- m.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of cancellation")
		}
	})
	require.NoError(t, m.WaitConnected(ctxT(t, 30*time.Second)), "last error: %s", m.Stats().LastError)
	return m, a, cancel, errc
}

// viewer is a small KVS viewer: coder/websocket, the same codec, a presigned URL with
// X-Amz-ClientId, and viewer.json's static key pair, as a browser viewer would use.
type viewer struct {
	t    *testing.T
	id   string
	conn *websocket.Conn
	in   chan signaling.Message
}

func connectViewer(t *testing.T, c *localcloud.Cloud, channel, id string) *viewer {
	t.Helper()
	vc, err := c.ViewerConfig()
	require.NoError(t, err)
	cl := newClient(t, c, signaling.ClientOptions{
		Endpoint: vc.ControlPlaneURL,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey}, nil
		})),
	})
	ctx := ctxT(t, 10*time.Second)
	ch, err := cl.DescribeChannel(ctx, channel)
	require.NoError(t, err)
	ep, err := cl.Endpoints(ctx, ch.ARN, signaling.RoleViewer)
	require.NoError(t, err)
	u, err := cl.PresignURL(ctx, signaling.Target{ChannelARN: ch.ARN, Endpoints: ep, ClientID: id})
	require.NoError(t, err)
	require.Contains(t, u, "X-Amz-ClientId="+id)
	conn, _, err := websocket.Dial(ctx, u, nil)
	require.NoError(t, err)
	t.Cleanup(func() { conn.CloseNow() })
	v := &viewer{t: t, id: id, conn: conn, in: make(chan signaling.Message, 64)}
	go func() {
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			m, err := signaling.Decode(data)
			if err != nil {
				t.Errorf("viewer %s: %v", id, err)
				continue
			}
			v.in <- m
		}
	}()
	return v
}

func (v *viewer) send(o signaling.Outgoing) {
	v.t.Helper()
	data, err := signaling.Encode(o)
	require.NoError(v.t, err)
	require.NoError(v.t, v.conn.Write(context.Background(), websocket.MessageText, data))
}

func (v *viewer) next() signaling.Message {
	v.t.Helper()
	select {
	case m := <-v.in:
		return m
	case <-time.After(5 * time.Second):
		v.t.Fatalf("viewer %s got nothing within 5 s", v.id)
		return signaling.Message{}
	}
}

// offerAndWait has the viewer send an offer and checks the master's answer and candidate.
func offerAndWait(t *testing.T, v *viewer, a *answering) {
	t.Helper()
	offer := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=offer from " + v.id + "\r\n"
	v.send(signaling.Outgoing{Action: signaling.TypeSDPOffer, SDP: &signaling.SessionDescription{Type: "offer", SDP: offer}})
	got := a.next()
	require.Equal(t, signaling.TypeSDPOffer, got.Type)
	require.Equal(t, v.id, got.SenderClientID)
	require.Equal(t, offer, got.SDP.SDP)
	ans := v.next()
	require.Equal(t, signaling.TypeSDPAnswer, ans.Type)
	require.Equal(t, "v=0\r\ns=answer for "+v.id+"\r\n", ans.SDP.SDP)
	cand := v.next()
	require.Equal(t, signaling.TypeICECandidate, cand.Type)
	require.Equal(t, "candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host", cand.Candidate.Candidate)
}

func TestMasterAnswersAViewer(t *testing.T) {
	c := startCloud(t, localcloud.Options{})
	var calls atomic.Int64
	var ice [][]signaling.ICEServer
	var iceMu sync.Mutex
	m, a, _, _ := runMaster(t, signaling.MasterOptions{
		Client:        newClient(t, c, signaling.ClientOptions{Credentials: deviceCredentials(c, &calls)}),
		Channel:       "front-door", // does not exist yet: the master creates it
		CreateChannel: true,
		OnICEServers:  func(s []signaling.ICEServer) { iceMu.Lock(); ice = append(ice, s); iceMu.Unlock() },
	})
	arn, ok := c.SignalingChannelARN("front-door")
	require.True(t, ok)
	require.Equal(t, arn, m.Channel().ARN)
	require.Equal(t, "ACTIVE", m.Channel().Status)
	require.Equal(t, []signaling.ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}, m.ICEServers(), "no TURN in localcloud: STUN only")
	iceMu.Lock()
	require.Len(t, ice, 1)
	iceMu.Unlock()
	require.GreaterOrEqual(t, calls.Load(), int64(2), "credentials asked for the ICE call and the connection")

	v := connectViewer(t, c, "front-door", "viewer-1")
	offerAndWait(t, v, a)

	// Trickled candidates, with the browser's usernameFragment kept.
	mid, idx, ufrag := "0", uint16(0), "Xk2p"
	sent := signaling.ICECandidate{Candidate: "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0", SDPMid: &mid, SDPMLineIndex: &idx, UsernameFragment: &ufrag}
	v.send(signaling.Outgoing{Action: signaling.TypeICECandidate, Candidate: &sent})
	got := a.next()
	require.Equal(t, signaling.TypeICECandidate, got.Type)
	require.Equal(t, "viewer-1", got.SenderClientID)
	require.Equal(t, sent, *got.Candidate)

	// The master must name a recipient; a failure with a correlation ID comes back.
	require.ErrorContains(t, m.Send(context.Background(), signaling.Outgoing{Action: signaling.TypeSDPAnswer, SDP: &signaling.SessionDescription{Type: "answer", SDP: "v=0"}}), "recipient")
	require.NoError(t, m.Send(context.Background(), signaling.Outgoing{Action: signaling.TypeSDPAnswer, RecipientClientID: "gone", CorrelationID: "corr-1", SDP: &signaling.SessionDescription{Type: "answer", SDP: "v=0"}}))
	st := a.next()
	require.Equal(t, signaling.TypeStatusResponse, st.Type)
	require.Equal(t, "corr-1", st.Status.CorrelationID)
	require.Equal(t, "400", st.Status.StatusCode)

	s := m.Stats()
	require.Equal(t, signaling.StateConnected, s.State)
	require.Equal(t, uint64(1), s.Connects)
	require.Equal(t, uint64(0), s.Dropped)
	require.Equal(t, uint64(3), s.MessagesIn)
	require.Equal(t, uint64(3), s.MessagesOut)
	require.Equal(t, uint64(1), s.ICERefreshes)
}

func TestMasterReconnects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		disrupt func(c *localcloud.Cloud) error
	}{
		{"GO_AWAY", func(c *localcloud.Cloud) error { return c.SignalingGoAway(localcloud.DefaultSignalingChannel) }},
		{"connection dropped by the service", func(c *localcloud.Cloud) error { return c.DropSignalingMaster(localcloud.DefaultSignalingChannel) }},
		{"another master took over, then left", func(c *localcloud.Cloud) error {
			return anotherMaster(c)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCloud(t, localcloud.Options{})
			var calls atomic.Int64
			m, a, _, _ := runMaster(t, signaling.MasterOptions{
				Client:  newClient(t, c, signaling.ClientOptions{Credentials: deviceCredentials(c, &calls)}),
				Channel: localcloud.DefaultSignalingChannel,
			})
			before := calls.Load()
			start := time.Now()
			require.NoError(t, tc.disrupt(c))
			require.Eventually(t, func() bool {
				s := m.Stats()
				return s.Connects == 2 && s.State == signaling.StateConnected
			}, 5*time.Second, 5*time.Millisecond, "stats: %+v", m.Stats())
			took := time.Since(start)
			t.Logf("reconnected in %s", took)
			require.Less(t, took, 3*time.Second, "well under 5 s on loopback")
			require.Greater(t, calls.Load(), before, "fresh credentials for the new connection")
			master, _ := c.SignalingPeers(localcloud.DefaultSignalingChannel)
			require.True(t, master)

			v := connectViewer(t, c, localcloud.DefaultSignalingChannel, "after")
			offerAndWait(t, v, a)
		})
	}
}

// anotherMaster connects a second master with the viewer key (the newest wins, so ours is
// dropped), then disconnects it.
func anotherMaster(c *localcloud.Cloud) error {
	vc, err := c.ViewerConfig()
	if err != nil {
		return err
	}
	cl, err := signaling.NewClient(signaling.ClientOptions{Region: vc.Region, Endpoint: vc.ControlPlaneURL,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey}, nil
		})})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch, err := cl.DescribeChannel(ctx, vc.ChannelName)
	if err != nil {
		return err
	}
	ep, err := cl.Endpoints(ctx, ch.ARN, signaling.RoleMaster)
	if err != nil {
		return err
	}
	conn, err := cl.Dial(ctx, signaling.Target{ChannelARN: ch.ARN, Endpoints: ep})
	if err != nil {
		return err
	}
	return conn.CloseNow()
}

func TestMasterCorrectsClockSkew(t *testing.T) {
	c := startCloud(t, localcloud.Options{KVSClockSkew: 25 * time.Minute})
	m, a, _, _ := runMaster(t, signaling.MasterOptions{
		Client:  newClient(t, c, signaling.ClientOptions{}),
		Channel: localcloud.DefaultSignalingChannel,
	})
	s := m.Stats()
	require.InDelta(t, (25 * time.Minute).Seconds(), s.ClockOffset.Seconds(), 3, "offset learnt from the control plane's Date header")
	require.Equal(t, uint64(1), s.ICERefreshes, "GetIceServerConfig signed at the corrected time")
	require.Equal(t, uint64(0), s.ConnectFailures)

	// The service's clock jumps the other way; the cached endpoints are reused, so it is the
	// WebSocket handshake's 403 that teaches the new offset.
	require.NoError(t, c.SetKVSClockSkew(-40*time.Minute))
	require.NoError(t, c.DropSignalingMaster(localcloud.DefaultSignalingChannel))
	require.Eventually(t, func() bool {
		s := m.Stats()
		return s.Connects == 2 && s.State == signaling.StateConnected
	}, 5*time.Second, 5*time.Millisecond, "stats: %+v", m.Stats())
	require.InDelta(t, (-40 * time.Minute).Seconds(), m.Stats().ClockOffset.Seconds(), 3)

	offerAndWait(t, connectViewerSkewed(t, c, -40*time.Minute), a)
}

// connectViewerSkewed connects a viewer whose clock agrees with the skewed service.
func connectViewerSkewed(t *testing.T, c *localcloud.Cloud, skew time.Duration) *viewer {
	t.Helper()
	require.NoError(t, c.SetKVSClockSkew(0))
	v := connectViewer(t, c, localcloud.DefaultSignalingChannel, "skewed")
	require.NoError(t, c.SetKVSClockSkew(skew))
	return v
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestMasterCountsMalformedMessages(t *testing.T) {
	c := startCloud(t, localcloud.Options{})
	m, a, _, _ := runMaster(t, signaling.MasterOptions{Client: newClient(t, c, signaling.ClientOptions{}), Channel: localcloud.DefaultSignalingChannel})
	for i, raw := range []string{
		`not JSON`,
		`{"messageType":"HELLO"}`,
		`{"senderClientId":"v","messageType":"SDP_OFFER","messagePayload":"***"}`,
		`{"senderClientId":"v","messageType":"SDP_OFFER","messagePayload":"` + b64(`{"type":"offer"}`) + `"}`,
		`{"messageType":"SDP_OFFER","messagePayload":"` + b64(`{"type":"offer","sdp":"v=0"}`) + `"}`, // no sender: cannot be answered
		`{"senderClientId":"v","messageType":"ICE_CANDIDATE","messagePayload":"` + strings.Repeat("A", 12*1024) + `"}`,
		`{"messageType":"GO_AWAY","padding":"` + strings.Repeat("x", 100*1024) + `"}`, // over 64 KB: dropped, not obeyed
	} {
		require.NoError(t, c.SendSignalingMasterRaw(localcloud.DefaultSignalingChannel, []byte(raw)))
		require.Eventually(t, func() bool { return m.Stats().Dropped == uint64(i+1) }, 5*time.Second, 5*time.Millisecond, "message %d: %s", i, m.Stats().LastError)
		s := m.Stats()
		require.Equal(t, signaling.StateConnected, s.State)
		require.Equal(t, uint64(1), s.Connects, "a malformed message never costs the connection")
		require.Contains(t, s.LastError, "malformed")
	}
	offerAndWait(t, connectViewer(t, c, localcloud.DefaultSignalingChannel, "still-works"), a)
}

func TestMasterRefetchesICEServers(t *testing.T) {
	turn := []localcloud.ICEServerConfig{{URIs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "u1", Password: "p1", TTL: 300 * time.Second}}
	c := startCloud(t, localcloud.Options{KVSICEServers: turn})
	updates := make(chan []signaling.ICEServer, 4)
	m, _, _, _ := runMaster(t, signaling.MasterOptions{
		Client:       newClient(t, c, signaling.ClientOptions{}),
		Channel:      localcloud.DefaultSignalingChannel,
		OnICEServers: func(s []signaling.ICEServer) { updates <- s },
	})
	require.Equal(t, []signaling.ICEServer{
		{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "u1", Credential: "p1", TTL: 300 * time.Second},
		{URLs: []string{"stun:127.0.0.1:3478"}},
	}, <-updates)

	require.NoError(t, c.SetKVSICEServers([]localcloud.ICEServerConfig{{URIs: []string{"turns:127.0.0.1:5349?transport=tcp"}, Username: "u2", Password: "p2"}}))
	require.NoError(t, c.SignalingReconnectICEServer(localcloud.DefaultSignalingChannel))
	select {
	case s := <-updates:
		require.Equal(t, "u2", s[0].Username)
		require.Equal(t, []string{"turns:127.0.0.1:5349?transport=tcp"}, s[0].URLs)
	case <-time.After(5 * time.Second):
		t.Fatal("no new ICE servers after RECONNECT_ICE_SERVER")
	}
	require.Equal(t, "u2", m.ICEServers()[0].Username)
	require.Equal(t, uint64(2), m.Stats().ICERefreshes)
	require.Equal(t, uint64(1), m.Stats().Connects, "RECONNECT_ICE_SERVER keeps the connection")
}

func TestMasterPlannedReconnect(t *testing.T) {
	c := startCloud(t, localcloud.Options{})
	m, a, _, _ := runMaster(t, signaling.MasterOptions{
		Client:         newClient(t, c, signaling.ClientOptions{}),
		Channel:        localcloud.DefaultSignalingChannel,
		ReconnectAfter: 300 * time.Millisecond, // stands in for 55 minutes
		PingInterval:   50 * time.Millisecond,
	})
	require.Eventually(t, func() bool { return m.Stats().Connects >= 3 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, uint64(0), m.Stats().ConnectFailures)
	require.NoError(t, m.WaitConnected(ctxT(t, 5*time.Second)))
	offerAndWait(t, connectViewer(t, c, localcloud.DefaultSignalingChannel, "v"), a)
}

func TestMasterMissingChannel(t *testing.T) {
	c := startCloud(t, localcloud.Options{})
	m, err := signaling.NewMaster(signaling.MasterOptions{Client: newClient(t, c, signaling.ClientOptions{}), Channel: "nobody-made-this"})
	require.NoError(t, err)
	err = m.Run(ctxT(t, 10*time.Second))
	require.ErrorIs(t, err, signaling.ErrChannelNotFound)
	require.ErrorContains(t, err, "let the agent create it")
	require.Equal(t, signaling.StateStopped, m.State())
}

func TestMasterStopsWithItsContext(t *testing.T) {
	c := startCloud(t, localcloud.Options{})
	m, _, cancel, errc := runMaster(t, signaling.MasterOptions{Client: newClient(t, c, signaling.ClientOptions{}), Channel: localcloud.DefaultSignalingChannel})
	cancel()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	require.Equal(t, signaling.StateStopped, m.State())
	require.ErrorIs(t, m.SendAnswer(context.Background(), "v", "v=0"), signaling.ErrNotConnected)
	require.Eventually(t, func() bool { up, _ := c.SignalingPeers(localcloud.DefaultSignalingChannel); return !up }, 5*time.Second, 10*time.Millisecond)
}

func TestMasterOverTLS(t *testing.T) {
	c := startCloud(t, localcloud.Options{})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.CAPool()}}}
	m, a, _, _ := runMaster(t, signaling.MasterOptions{
		Client:  newClient(t, c, signaling.ClientOptions{Endpoint: c.KVSTLSEndpoint(), HTTPClient: hc}),
		Channel: localcloud.DefaultSignalingChannel,
	})
	require.NotZero(t, m.Stats().Connects)
	offerAndWait(t, connectViewer(t, c, localcloud.DefaultSignalingChannel, "v"), a)
}

func TestMasterRefreshesTURNBeforeExpiry(t *testing.T) {
	c := startCloud(t, localcloud.Options{KVSICEServers: []localcloud.ICEServerConfig{{URIs: []string{"turn:127.0.0.1:3478"}, Username: "u", Password: "p", TTL: time.Second}}})
	m, _, _, _ := runMaster(t, signaling.MasterOptions{
		Client:       newClient(t, c, signaling.ClientOptions{}),
		Channel:      localcloud.DefaultSignalingChannel,
		PingInterval: 50 * time.Millisecond,
	})
	require.Equal(t, time.Second, m.ICEServers()[0].TTL)
	require.Eventually(t, func() bool { return m.Stats().ICERefreshes >= 3 }, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, uint64(1), m.Stats().Connects, "refreshed on the same connection")
}
