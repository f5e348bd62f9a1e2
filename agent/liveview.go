package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/edgecam/edgecam/media/webrtc"
	"github.com/edgecam/edgecam/provisioning"
	"github.com/edgecam/edgecam/signaling"
	"go.uber.org/zap"
)

// liveView joins the WebRTC server to the KVS signaling channel, the camera being the master:
// offers become answers, and ICE candidates go both ways (trickle).
type liveView struct {
	a      *Agent
	master *signaling.Master
	log    *zap.Logger

	mu  sync.Mutex
	ice []webrtc.ICEServer
	// pending holds the camera's candidates for a viewer until its answer is out: a browser
	// cannot add candidates before it has the answer. No entry: send them as they come.
	pending map[string][]webrtc.Candidate
}

// iceServers is the webrtc server's view of the current ICE servers.
func (lv *liveView) iceServers() []webrtc.ICEServer {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.ice
}

// channelFor picks the signaling channel: configured, from the provisioning answer, or the
// thing name.
func channelFor(a *Agent, id *provisioning.Identity) string {
	if c := a.cfg.WebRTC.Channel; c != "" {
		return c
	}
	if c := id.DeviceConfiguration["signalingChannelName"]; c != "" {
		return c
	}
	return id.ThingName
}

// runLiveView serves viewers until ctx ends, once AWS credentials are available.
func (l *cloudLink) runLiveView(ctx context.Context, dev *device, credsReady chan struct{}) {
	a := l.a
	cfg := a.cfg
	if a.webrtc == nil {
		return
	}
	log := a.log.Named("liveview")
	if cfg.Credentials.Endpoint == "" {
		log.Warn("live view off: it needs AWS credentials, set credentials.endpoint")
		return
	}
	select {
	case <-credsReady:
	case <-ctx.Done():
		return
	}
	client, err := signaling.NewClient(signaling.ClientOptions{
		Region:      cfg.AWS.Region,
		Credentials: a.Credentials(),
		Endpoint:    cfg.WebRTC.ControlPlane,
		HTTPClient: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: dev.pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
		}},
		STUNURL:     stunOverride(cfg.WebRTC.STUN),
		DisableSTUN: cfg.WebRTC.STUN == "none",
		Log:         log,
	})
	if err != nil {
		log.Error("live view off", zap.Error(err))
		return
	}
	lv := &liveView{a: a, log: log, pending: map[string][]webrtc.Candidate{}}
	channel := channelFor(a, dev.id)
	lv.master, err = signaling.NewMaster(signaling.MasterOptions{
		Client:        client,
		Channel:       channel,
		CreateChannel: cfg.WebRTC.CreateChannel,
		Tags:          map[string]string{"edgecam:thing": dev.id.ThingName},
		OnMessage:     func(m signaling.Message) { lv.onMessage(ctx, m) },
		OnICEServers:  lv.setICEServers,
		Log:           log,
	})
	if err != nil {
		log.Error("live view off", zap.Error(err))
		return
	}
	a.setLiveView(lv)
	defer a.setLiveView(nil)
	log.Info("live view: serving viewers as the channel's master", zap.String("channel", channel))
	if err := lv.master.Run(ctx); err != nil {
		log.Error("live view stopped", zap.Error(err))
	}
}

func stunOverride(s string) string {
	if s == "none" {
		return ""
	}
	return s
}

func (lv *liveView) setICEServers(servers []signaling.ICEServer) {
	out := make([]webrtc.ICEServer, 0, len(servers))
	for _, s := range servers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	lv.mu.Lock()
	lv.ice = out
	lv.mu.Unlock()
}

// onMessage handles one message from a viewer, in order (a candidate never overtakes its
// offer).
func (lv *liveView) onMessage(ctx context.Context, m signaling.Message) {
	viewer := m.SenderClientID
	switch m.Type {
	case signaling.TypeSDPOffer:
		if m.SDP == nil || viewer == "" {
			return
		}
		lv.mu.Lock()
		lv.pending[viewer] = []webrtc.Candidate{}
		lv.mu.Unlock()
		answer, err := lv.a.webrtc.HandleOffer(ctx, viewer, m.SDP.SDP, func(c webrtc.Candidate) { lv.sendCandidate(ctx, viewer, c) })
		if err != nil {
			lv.forget(viewer)
			if errors.Is(err, webrtc.ErrTooManyViewers) {
				lv.log.Warn("viewer refused", zap.String("viewer", viewer), zap.Error(err))
			} else {
				lv.log.Warn("offer not answered", zap.String("viewer", viewer), zap.Error(err))
			}
			return
		}
		if err := lv.master.SendAnswer(ctx, viewer, answer); err != nil {
			lv.log.Warn("answer not sent", zap.String("viewer", viewer), zap.Error(err))
			lv.a.webrtc.Remove(viewer)
			lv.forget(viewer)
			return
		}
		lv.mu.Lock()
		queued := lv.pending[viewer]
		delete(lv.pending, viewer) // from now on candidates go out as they come
		lv.mu.Unlock()
		for _, c := range queued {
			lv.sendCandidate(ctx, viewer, c)
		}
	case signaling.TypeICECandidate:
		if m.Candidate == nil || m.Candidate.Candidate == "" {
			return // end of candidates
		}
		c := webrtc.Candidate{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid, SDPMLineIndex: m.Candidate.SDPMLineIndex}
		if err := lv.a.webrtc.AddCandidate(viewer, c); err != nil {
			lv.log.Debug("viewer candidate not added", zap.String("viewer", viewer), zap.Error(err))
		}
	case signaling.TypeStatusResponse:
		if m.Status != nil {
			lv.log.Warn("signaling refused a message", zap.String("status", m.Status.StatusCode),
				zap.String("error", m.Status.ErrorType), zap.String("description", m.Status.Description))
		}
	}
}

// sendCandidate sends a local candidate, or queues it until the viewer has its answer.
func (lv *liveView) sendCandidate(ctx context.Context, viewer string, c webrtc.Candidate) {
	lv.mu.Lock()
	if q, waiting := lv.pending[viewer]; waiting {
		lv.pending[viewer] = append(q, c)
		lv.mu.Unlock()
		return
	}
	lv.mu.Unlock()
	if err := lv.master.SendCandidate(ctx, viewer, signaling.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex}); err != nil {
		lv.log.Debug("candidate not sent", zap.String("viewer", viewer), zap.Error(err))
	}
}

func (lv *liveView) forget(viewer string) {
	lv.mu.Lock()
	delete(lv.pending, viewer)
	lv.mu.Unlock()
}
