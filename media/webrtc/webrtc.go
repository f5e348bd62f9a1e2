// Package webrtc serves live H.264 from the Hub to WebRTC viewers with pion: one
// PeerConnection per viewer, trickle ICE both ways, a viewer cap, an instant start on the
// current GOP's keyframe with the rest of the GOP paced behind it, keyframe requests from
// PLI/FIR, and a per-viewer bandwidth estimate (TWCC send-side estimation and REMB) that the
// agent can use for the encoder bitrate. It knows nothing of KVS: signaling hands it offers and candidates and carries its answers.
package webrtc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	pion "github.com/pion/webrtc/v4"
	"go.uber.org/zap"
)

// ErrTooManyViewers is returned by HandleOffer when the viewer cap is reached.
var ErrTooManyViewers = errors.New("too many viewers")

// ICEServer is a STUN or TURN server.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// Candidate is an ICE candidate as signaling carries it.
type Candidate struct {
	Candidate     string
	SDPMid        *string
	SDPMLineIndex *uint16
}

// Options configure a Server.
type Options struct {
	Hub *media.Hub
	// ICEServers returns the current STUN/TURN servers (they expire and are refreshed).
	ICEServers func() []ICEServer
	// MaxViewers caps concurrent viewers (default 10, KVS's limit).
	MaxViewers int
	// UDPPort, when set, multiplexes every viewer's ICE over this one UDP port.
	UDPPort int
	// IncludeLoopback offers loopback candidates (tests and same-machine viewers).
	IncludeLoopback bool
	// RequestKeyframe asks the encoder for a keyframe (PLI/FIR); nil when passed through.
	RequestKeyframe func()
	// QueueFrames bounds each viewer's queue in the Hub.
	QueueFrames int
	// InitialBitrate seeds the bandwidth estimators, in bit/s (default 2 Mbit/s).
	InitialBitrate int
	// BandwidthEstimation runs send-side estimation from TWCC feedback for each viewer. It
	// costs CPU per packet, and only helps when the agent encodes (the estimate sets the
	// bitrate); REMB estimates are read either way.
	BandwidthEstimation bool
	// CatchUpSpeed is how many times the stream's measured rate a new viewer's backlog (the
	// current GOP after its keyframe) is sent at (default 3): the backlog is caught up in
	// GOP/(CatchUpSpeed−1), and the link must carry CatchUpSpeed × the stream meanwhile.
	CatchUpSpeed float64
	// NACKHistory is how many of each viewer's last RTP packets are kept to answer its NACKs
	// (default 512; a power of two from 64 to 32768). Each takes a 1.5 KB buffer: 512 are
	// 0.75 MB a viewer, about 2.5 s of a 2 Mbit/s stream, or 0.8 s of a catch-up at 3 times
	// its rate, where a retransmission is useful for a few round trips only.
	NACKHistory int
	Log         *zap.Logger
}

// DefaultNACKHistory is Options.NACKHistory's default: pion's own (1024) is 1.5 MB a viewer.
const DefaultNACKHistory = 512

// Server owns the viewers' sessions.
type Server struct {
	opts Options
	log  *zap.Logger
	api  *pion.API
	mux  ice.UDPMux

	// building serialises PeerConnection creation so that the interceptors' per-connection
	// callbacks can be matched with the connection being built.
	building sync.Mutex
	nextBWE  cc.BandwidthEstimator

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
}

// NewServer prepares the pion API (codecs, interceptors, ICE settings).
func NewServer(opts Options) (*Server, error) {
	if opts.Hub == nil {
		return nil, errors.New("webrtc: no hub")
	}
	if opts.MaxViewers <= 0 {
		opts.MaxViewers = 10
	}
	if opts.QueueFrames <= 0 {
		opts.QueueFrames = 120
	}
	if opts.CatchUpSpeed == 0 {
		opts.CatchUpSpeed = 3
	}
	if opts.CatchUpSpeed < 1.5 || opts.CatchUpSpeed > 100 {
		return nil, fmt.Errorf("webrtc: catch-up speed %g is out of range: it must be between 1.5 and 100 times the stream's rate", opts.CatchUpSpeed)
	}
	if opts.NACKHistory == 0 {
		opts.NACKHistory = DefaultNACKHistory
	}
	if n := opts.NACKHistory; n < 64 || n > 1<<15 || n&(n-1) != 0 {
		return nil, fmt.Errorf("webrtc: NACK history of %d packets: it must be a power of two from 64 to 32768, such as %d", n, DefaultNACKHistory)
	}
	if opts.InitialBitrate <= 0 {
		opts.InitialBitrate = 2_000_000
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.ICEServers == nil {
		opts.ICEServers = func() []ICEServer { return nil }
	}
	s := &Server{opts: opts, log: opts.Log, sessions: map[string]*session{}}

	m := &pion.MediaEngine{}
	fb := []pion.RTCPFeedback{{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	// packetization-mode=1 in the profiles browsers offer, High first, as encoders make it;
	// the payload types are pion's own defaults, so that they never clash with a viewer's.
	for _, c := range []struct {
		profile string
		pt      pion.PayloadType
	}{{"64001f", 112}, {"4d001f", 127}, {"42e01f", 106}, {"42001f", 102}} {
		if err := m.RegisterCodec(pion.RTPCodecParameters{
			RTPCodecCapability: pion.RTPCodecCapability{
				MimeType: pion.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + c.profile,
				RTCPFeedback: fb,
			},
			PayloadType: c.pt,
		}, pion.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("webrtc: register H.264: %w", err)
		}
	}
	// Interceptors added later wrap those added earlier: packets from the track pass the
	// last one first. The TWCC header extension must be on a packet before the congestion
	// controller sees it, so it comes after the controller here. (pion's stats interceptor
	// is left out: it costs a lock and bookkeeping per packet; the session counts itself.)
	reg := &interceptor.Registry{}
	// NACKs from viewers are answered from each viewer's last NACKHistory packets. (pion's
	// NACK generator is left out: it sends NACKs for received streams, and there are none,
	// yet it would wake each connection 10 times a second.)
	responder, err := nackResponder(opts.NACKHistory)
	if err != nil {
		return nil, err
	}
	reg.Add(responder)
	if err := pion.ConfigureRTCPReports(reg); err != nil {
		return nil, err
	}
	if opts.BandwidthEstimation {
		ccFactory, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
			// No pacer here: the session paces a new viewer's catch-up itself (pacer.go); the
			// encoder bitrate is what follows the estimate.
			return gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(opts.InitialBitrate), gcc.SendSideBWEMinBitrate(100_000),
				gcc.SendSideBWEPacer(gcc.NewNoOpPacer()))
		})
		if err != nil {
			return nil, err
		}
		ccFactory.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { s.nextBWE = e })
		reg.Add(ccFactory)
		if err := pion.ConfigureTWCCHeaderExtensionSender(m, reg); err != nil {
			return nil, err
		}
	}

	se := pion.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// A viewer that vanishes without a goodbye is dropped after about 10 s, not pion's 30.
	se.SetICETimeouts(4*time.Second, 10*time.Second, 2*time.Second)
	se.SetIncludeLoopbackCandidate(opts.IncludeLoopback)
	if opts.UDPPort > 0 {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: opts.UDPPort})
		if err != nil {
			return nil, fmt.Errorf("webrtc: UDP port %d: %w (set webrtc.udp_port to a free port, or 0)", opts.UDPPort, err)
		}
		s.mux = pion.NewICEUDPMux(nil, conn)
		se.SetICEUDPMux(s.mux)
	}
	s.api = pion.NewAPI(pion.WithMediaEngine(m), pion.WithInterceptorRegistry(reg), pion.WithSettingEngine(se))
	return s, nil
}

// nackResponder answers NACKs from the last history packets of each stream.
func nackResponder(history int) (*nack.ResponderInterceptorFactory, error) {
	f, err := nack.NewResponderInterceptor(nack.ResponderSize(uint16(history)))
	if err != nil {
		return nil, fmt.Errorf("webrtc: NACK responder: %w", err)
	}
	return f, nil
}

// Viewers returns the number of live sessions.
func (s *Server) Viewers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// HandleOffer answers a viewer's offer. Local ICE candidates are handed to onCandidate as
// they are found (trickle ICE); the answer is returned at once. A viewer that offers again
// replaces its previous session.
func (s *Server) HandleOffer(ctx context.Context, viewer, offerSDP string, onCandidate func(Candidate)) (string, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", errors.New("webrtc: server closed")
	}
	old := s.sessions[viewer]
	if old == nil && len(s.sessions) >= s.opts.MaxViewers {
		s.mu.Unlock()
		return "", fmt.Errorf("%w: %d viewers are watching (webrtc.max_viewers)", ErrTooManyViewers, s.opts.MaxViewers)
	}
	s.mu.Unlock()
	if old != nil {
		old.close("replaced by a new offer")
	}

	sess, err := s.newSession(viewer, onCandidate)
	if err != nil {
		return "", err
	}
	answer, err := sess.answer(offerSDP)
	if err != nil {
		sess.close("offer refused")
		return "", err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sess.close("server closed")
		return "", errors.New("webrtc: server closed")
	}
	s.sessions[viewer] = sess
	s.mu.Unlock()
	s.log.Info("viewer joined", zap.String("viewer", viewer), zap.Int("viewers", s.Viewers()))
	return answer, nil
}

// AddCandidate adds a viewer's ICE candidate to its session.
func (s *Server) AddCandidate(viewer string, c Candidate) error {
	s.mu.Lock()
	sess := s.sessions[viewer]
	s.mu.Unlock()
	if sess == nil {
		return fmt.Errorf("webrtc: no session for viewer %q (candidate before offer?)", viewer)
	}
	return sess.pc.AddICECandidate(pion.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
}

// Remove ends a viewer's session.
func (s *Server) Remove(viewer string) {
	s.mu.Lock()
	sess := s.sessions[viewer]
	s.mu.Unlock()
	if sess != nil {
		sess.close("removed")
	}
}

func (s *Server) forget(sess *session) {
	s.mu.Lock()
	if s.sessions[sess.viewer] == sess {
		delete(s.sessions, sess.viewer)
	}
	n := len(s.sessions)
	s.mu.Unlock()
	s.log.Info("viewer left", zap.String("viewer", sess.viewer), zap.Int("viewers", n))
}

// Close ends every session.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.close("shutting down")
	}
	if s.mux != nil {
		return s.mux.Close()
	}
	return nil
}

// ViewerStats describes one session.
type ViewerStats struct {
	Viewer        string
	State         string
	EstimateBps   int    // TWCC send-side estimate, or REMB when lower; 0 when unknown
	BytesSent     uint64 // H.264 payload handed to the track
	PLIs          uint32
	FramesSent    uint64
	FramesDropped uint64 // dropped by the Hub because the viewer fell behind
}

// Stats returns every session's statistics.
func (s *Server) Stats() []ViewerStats {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	out := make([]ViewerStats, 0, len(sessions))
	for _, sess := range sessions {
		out = append(out, sess.stats())
	}
	return out
}

// EstimatedBitrate returns the lowest bandwidth estimate across connected viewers, in
// kbit/s; ok is false when no viewer has an estimate yet.
func (s *Server) EstimatedBitrate() (kbps int, ok bool) {
	for _, st := range s.Stats() {
		if st.EstimateBps <= 0 || st.State != pion.PeerConnectionStateConnected.String() {
			continue
		}
		if !ok || st.EstimateBps/1000 < kbps {
			kbps, ok = st.EstimateBps/1000, true
		}
	}
	return kbps, ok
}

// iceServers converts to pion's type.
func (s *Server) iceServers() []pion.ICEServer {
	var out []pion.ICEServer
	for _, is := range s.opts.ICEServers() {
		out = append(out, pion.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return out
}

// keyframeRequested handles a PLI or FIR.
func (s *Server) keyframeRequested() {
	if s.opts.RequestKeyframe != nil {
		s.opts.RequestKeyframe()
	}
}

// rembOf returns the bitrate of a REMB packet, or 0.
func rembOf(p rtcp.Packet) int {
	if r, ok := p.(*rtcp.ReceiverEstimatedMaximumBitrate); ok {
		return int(r.Bitrate)
	}
	return 0
}
