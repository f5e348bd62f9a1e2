package webrtc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	pion "github.com/pion/webrtc/v4"
	"go.uber.org/zap"
)

// session is one viewer's PeerConnection and the pump feeding it from the Hub.
type session struct {
	s      *Server
	viewer string
	log    *zap.Logger
	pc     *pion.PeerConnection
	track  *pion.TrackLocalStaticRTP
	sender *pion.RTPSender
	bwe    cc.BandwidthEstimator
	ctx    context.Context
	cancel context.CancelFunc

	startOnce sync.Once
	closeOnce sync.Once
	remb      atomic.Int64
	plis      atomic.Uint32
	sent      atomic.Uint64
	bytes     atomic.Uint64
	sub       atomic.Pointer[media.Subscription]
}

func (s *Server) newSession(viewer string, onCandidate func(Candidate)) (*session, error) {
	s.building.Lock()
	s.nextBWE = nil
	pc, err := s.api.NewPeerConnection(pion.Configuration{ICEServers: s.iceServers()})
	bwe := s.nextBWE
	s.building.Unlock()
	if err != nil {
		return nil, fmt.Errorf("webrtc: new peer connection: %w", err)
	}
	track, err := pion.NewTrackLocalStaticRTP(pion.RTPCodecCapability{MimeType: pion.MimeTypeH264, ClockRate: 90000}, "video", "edgecam")
	if err != nil {
		pc.Close()
		return nil, err
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("webrtc: add track: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sess := &session{s: s, viewer: viewer, log: s.log.With(zap.String("viewer", viewer)), pc: pc, track: track,
		sender: sender, bwe: bwe, ctx: ctx, cancel: cancel}

	pc.OnICECandidate(func(c *pion.ICECandidate) {
		if c == nil || onCandidate == nil {
			return // gathering complete
		}
		init := c.ToJSON()
		onCandidate(Candidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex})
	})
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		sess.log.Debug("connection state", zap.String("state", st.String()))
		switch st {
		case pion.PeerConnectionStateConnected:
			sess.startOnce.Do(func() { go sess.pump() })
		case pion.PeerConnectionStateFailed, pion.PeerConnectionStateClosed:
			sess.close("connection " + st.String())
		}
	})
	go sess.readRTCP()
	return sess, nil
}

// answer applies the offer and returns the answer (ICE candidates trickle separately).
func (sess *session) answer(offer string) (string, error) {
	if err := sess.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("webrtc: the viewer's offer is not usable: %w", err)
	}
	ans, err := sess.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("webrtc: answer: %w (does the viewer accept H.264 with packetization-mode=1?)", err)
	}
	if err := sess.pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("webrtc: answer: %w", err)
	}
	return sess.pc.LocalDescription().SDP, nil
}

// pump sends the Hub's access units to the viewer, starting with the current GOP: its
// keyframe at once, the backlog paced (see pacer.go).
func (sess *session) pump() {
	rate := sess.s.streamRate()
	sub := sess.s.opts.Hub.Subscribe(media.SubscribeOptions{Name: "viewer " + sess.viewer, QueueFrames: sess.s.opts.QueueFrames})
	sess.sub.Store(sub)
	defer sub.Close()
	tx := newTransmitter(sess.track, rate, sess.s.opts.CatchUpSpeed, uint16(rand.Uint32()), rand.Uint32())
	for {
		au, err := sub.Next(sess.ctx)
		if err != nil {
			return
		}
		if err := tx.send(sess.ctx, au, time.Since(au.Wall) > catchUp); err != nil {
			if errors.Is(err, context.Canceled) {
				return
			}
			sess.log.Debug("write failed", zap.Error(err))
		}
		sess.sent.Add(1)
		sess.bytes.Add(uint64(len(au.Data)))
	}
}

// readRTCP drains the sender's RTCP (NACK handling needs it) and acts on PLI, FIR and REMB.
func (sess *session) readRTCP() {
	for {
		pkts, _, err := sess.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				sess.plis.Add(1)
				sess.s.keyframeRequested()
			}
			if b := rembOf(p); b > 0 {
				sess.remb.Store(int64(b))
			}
		}
	}
}

func (sess *session) close(why string) {
	sess.closeOnce.Do(func() {
		sess.log.Debug("closing session", zap.String("why", why))
		sess.cancel()
		_ = sess.pc.Close()
		sess.s.forget(sess)
	})
}

func (sess *session) stats() ViewerStats {
	st := ViewerStats{Viewer: sess.viewer, State: sess.pc.ConnectionState().String(), PLIs: sess.plis.Load(), FramesSent: sess.sent.Load()}
	if sess.bwe != nil {
		st.EstimateBps = sess.bwe.GetTargetBitrate()
	}
	if r := int(sess.remb.Load()); r > 0 && (st.EstimateBps == 0 || r < st.EstimateBps) {
		st.EstimateBps = r
	}
	st.BytesSent = sess.bytes.Load()
	if sub := sess.sub.Load(); sub != nil {
		st.FramesDropped = sub.Stats().Dropped
	}
	return st
}
