// Package kvsviewer is a KVS WebRTC VIEWER in Go for tests and benchmarks: it signs in with
// a key pair (localcloud's viewer.json), finds the channel, connects to its signaling
// WebSocket with a client ID, and runs a pion viewer (internal/webrtcviewer) through it.
package kvsviewer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/coder/websocket"
	"github.com/edgecam/edgecam/internal/webrtcviewer"
	"github.com/edgecam/edgecam/signaling"
	pion "github.com/pion/webrtc/v4"
)

// Options say where to connect.
type Options struct {
	Region, ControlPlane, Channel string
	AccessKeyID, SecretAccessKey  string
	ClientID                      string
	IncludeLoopback               bool
	// RelayOnly connects through the channel's TURN server only.
	RelayOnly bool
}

// Viewer is a connected viewer.
type Viewer struct {
	*webrtcviewer.Viewer
	// ICEServers are what GetIceServerConfig answered.
	ICEServers []signaling.ICEServer
	ws         *websocket.Conn
	// OfferSent is when the SDP offer left.
	OfferSent time.Time
	answered  chan struct{}
	refused   chan string
}

// Dial connects a viewer and sends its offer; media arrive on Frames().
func Dial(ctx context.Context, o Options) (*Viewer, error) {
	client, err := signaling.NewClient(signaling.ClientOptions{
		Region: o.Region, Endpoint: o.ControlPlane, DisableSTUN: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: o.AccessKeyID, SecretAccessKey: o.SecretAccessKey, Source: "viewer key"}, nil
		}),
	})
	if err != nil {
		return nil, err
	}
	ch, err := client.DescribeChannel(ctx, o.Channel)
	if err != nil {
		return nil, err
	}
	eps, err := client.Endpoints(ctx, ch.ARN, signaling.RoleViewer)
	if err != nil {
		return nil, err
	}
	target := signaling.Target{ChannelARN: ch.ARN, Endpoints: eps, ClientID: o.ClientID}
	ice, err := client.ICEServers(ctx, target)
	if err != nil {
		return nil, err
	}
	var servers []pion.ICEServer
	for _, s := range ice {
		servers = append(servers, pion.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	wv, err := webrtcviewer.New(webrtcviewer.Options{ICEServers: servers, IncludeLoopback: o.IncludeLoopback, RelayOnly: o.RelayOnly})
	if err != nil {
		return nil, err
	}
	ws, err := client.Dial(ctx, target)
	if err != nil {
		wv.Close()
		return nil, err
	}
	v := &Viewer{Viewer: wv, ICEServers: ice, ws: ws, answered: make(chan struct{}), refused: make(chan string, 1)}
	var mu sync.Mutex
	send := func(o signaling.Outgoing) {
		data, err := signaling.Encode(o)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		_ = ws.Write(context.Background(), websocket.MessageText, data)
	}
	go v.read(wv)
	offer, err := wv.Offer()
	if err != nil {
		v.Close()
		return nil, err
	}
	wv.OnCandidate(func(c pion.ICECandidateInit) {
		send(signaling.Outgoing{Action: signaling.TypeICECandidate, Candidate: &signaling.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex}})
	})
	v.OfferSent = time.Now()
	send(signaling.Outgoing{Action: signaling.TypeSDPOffer, SDP: &signaling.SessionDescription{Type: "offer", SDP: offer}})
	return v, nil
}

// read applies the master's answer and candidates (candidates before the answer wait).
func (v *Viewer) read(wv *webrtcviewer.Viewer) {
	var early []pion.ICECandidateInit
	answered := false
	for {
		_, data, err := v.ws.Read(context.Background())
		if err != nil {
			return
		}
		m, err := signaling.Decode(data)
		if err != nil {
			continue
		}
		switch m.Type {
		case signaling.TypeSDPAnswer:
			if m.SDP == nil || wv.SetAnswer(m.SDP.SDP) != nil {
				continue
			}
			answered = true
			close(v.answered)
			for _, c := range early {
				_ = wv.AddCandidate(c)
			}
			early = nil
		case signaling.TypeICECandidate:
			if m.Candidate == nil {
				continue
			}
			c := pion.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid, SDPMLineIndex: m.Candidate.SDPMLineIndex}
			if answered {
				_ = wv.AddCandidate(c)
			} else {
				early = append(early, c)
			}
		case signaling.TypeStatusResponse:
			if m.Status != nil {
				select {
				case v.refused <- m.Status.Description:
				default:
				}
			}
		}
	}
}

// WaitAnswer waits for the master's answer.
func (v *Viewer) WaitAnswer(ctx context.Context) error {
	select {
	case <-v.answered:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no answer from the camera: %w", ctx.Err())
	}
}

// FirstKeyframe waits for the first complete keyframe and returns how long after the offer
// it arrived.
func (v *Viewer) FirstKeyframe(ctx context.Context) (time.Duration, webrtcviewer.Frame, error) {
	for {
		select {
		case f := <-v.Frames():
			if f.Keyframe {
				return f.Arrived.Sub(v.OfferSent), f, nil
			}
		case <-ctx.Done():
			return 0, webrtcviewer.Frame{}, fmt.Errorf("no keyframe: %w", ctx.Err())
		}
	}
}

// Close hangs up.
func (v *Viewer) Close() error {
	_ = v.ws.Close(websocket.StatusNormalClosure, "")
	return v.Viewer.Close()
}
