// Package webrtcviewer is a WebRTC viewer in Go (pion) for tests and benchmarks: it offers
// to receive H.264, reassembles access units from RTP (marker bit, sequence gaps) and hands
// them over with their arrival time, so that tests can check what a browser would decode.
package webrtcviewer

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgecam/edgecam/media/h264"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/transport/v4"
	pion "github.com/pion/webrtc/v4"
)

// Frame is one received access unit.
type Frame struct {
	Data     []byte // Annex-B
	Keyframe bool
	Arrived  time.Time
}

// Options configure a viewer.
type Options struct {
	ICEServers      []pion.ICEServer
	IncludeLoopback bool
	// Buffer is the frame channel's size (default 256); when full, frames are dropped.
	Buffer int
	// RelayOnly uses TURN relay candidates only (ICE transport policy "relay").
	RelayOnly bool
	// Net, when set, is the network the viewer's sockets are opened in (e.g. a shaped link
	// in another network namespace, internal/netshape).
	Net transport.Net
}

// Viewer is one receiving PeerConnection.
type Viewer struct {
	pc     *pion.PeerConnection
	frames chan Frame

	mu         sync.Mutex
	candidates []pion.ICECandidateInit
	onCand     func(pion.ICECandidateInit)
	firstKey   time.Time
	received   int
	broken     int
	lost       int // RTP sequence numbers never seen (or seen out of order)
}

// New creates a viewer that will receive one H.264 video track.
func New(opts Options) (*Viewer, error) {
	if opts.Buffer <= 0 {
		opts.Buffer = 256
	}
	m := &pion.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := pion.RegisterDefaultInterceptors(m, reg); err != nil {
		return nil, err
	}
	se := pion.SettingEngine{}
	se.SetIncludeLoopbackCandidate(opts.IncludeLoopback)
	if opts.Net != nil {
		se.SetNet(opts.Net)
	}
	api := pion.NewAPI(pion.WithMediaEngine(m), pion.WithInterceptorRegistry(reg), pion.WithSettingEngine(se))
	conf := pion.Configuration{ICEServers: opts.ICEServers}
	if opts.RelayOnly {
		conf.ICETransportPolicy = pion.ICETransportPolicyRelay
	}
	pc, err := api.NewPeerConnection(conf)
	if err != nil {
		return nil, err
	}
	v := &Viewer{pc: pc, frames: make(chan Frame, opts.Buffer)}
	if _, err := pc.AddTransceiverFromKind(pion.RTPCodecTypeVideo, pion.RTPTransceiverInit{Direction: pion.RTPTransceiverDirectionRecvonly}); err != nil {
		pc.Close()
		return nil, err
	}
	pc.OnICECandidate(func(c *pion.ICECandidate) {
		if c == nil {
			return
		}
		init := c.ToJSON()
		v.mu.Lock()
		fn := v.onCand
		if fn == nil {
			v.candidates = append(v.candidates, init)
		}
		v.mu.Unlock()
		if fn != nil {
			fn(init)
		}
	})
	pc.OnTrack(func(track *pion.TrackRemote, _ *pion.RTPReceiver) {
		if track.Codec().MimeType == pion.MimeTypeH264 {
			v.receive(track)
		}
	})
	return v, nil
}

// OnCandidate sends local candidates to fn, including those found before it was set.
func (v *Viewer) OnCandidate(fn func(pion.ICECandidateInit)) {
	v.mu.Lock()
	pending := v.candidates
	v.candidates = nil
	v.onCand = fn
	v.mu.Unlock()
	for _, c := range pending {
		fn(c)
	}
}

// Offer creates the offer.
func (v *Viewer) Offer() (string, error) {
	offer, err := v.pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	if err := v.pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	return offer.SDP, nil
}

// SetAnswer applies the camera's answer.
func (v *Viewer) SetAnswer(sdp string) error {
	return v.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: sdp})
}

// AddCandidate adds a remote candidate.
func (v *Viewer) AddCandidate(c pion.ICECandidateInit) error { return v.pc.AddICECandidate(c) }

// Frames delivers received access units; decoding starts at the first keyframe (earlier
// units are counted as broken and not delivered).
func (v *Viewer) Frames() <-chan Frame { return v.frames }

// Close ends the connection.
func (v *Viewer) Close() error { return v.pc.Close() }

// State returns the connection state.
func (v *Viewer) State() pion.PeerConnectionState { return v.pc.ConnectionState() }

// Stats returns frames received, frames dropped as undecodable, and when the first
// keyframe arrived.
func (v *Viewer) Stats() (received, broken int, firstKey time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.received, v.broken, v.firstKey
}

// Counters is what a viewer has received so far.
type Counters struct {
	Frames      int       // complete, decodable access units
	Broken      int       // access units dropped: incomplete, or without their references
	LostPackets int       // RTP sequence gaps (a retransmission arriving late counts too)
	FirstKey    time.Time // when the first complete keyframe arrived
}

// Counters returns the viewer's counters.
func (v *Viewer) Counters() Counters {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Counters{Frames: v.received, Broken: v.broken, LostPackets: v.lost, FirstKey: v.firstKey}
}

// receive reassembles access units: packets of one picture share a timestamp, the last has
// the marker bit; a lost packet breaks the picture and everything up to the next keyframe.
func (v *Viewer) receive(track *pion.TrackRemote) {
	var (
		depack  codecs.H264Packet
		au      []byte
		ts      uint32
		lastSeq uint16
		started bool
		broken  bool
		synced  bool // a keyframe has been seen: references are complete
	)
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		if started && pkt.SequenceNumber != lastSeq+1 {
			broken = true
			gap := int(pkt.SequenceNumber - lastSeq - 1)
			if gap > 1<<15 { // behind: a late retransmission or a reordered packet
				gap = 1
			}
			v.mu.Lock()
			v.lost += gap
			v.mu.Unlock()
		}
		lastSeq, started = pkt.SequenceNumber, true
		if len(au) > 0 && pkt.Timestamp != ts {
			broken = true // the previous picture never saw its marker bit
			au = au[:0]
		}
		ts = pkt.Timestamp
		nal, err := depack.Unmarshal(pkt.Payload)
		if err != nil {
			broken = true
			continue
		}
		au = append(au, nal...)
		if !pkt.Marker {
			continue
		}
		frame := Frame{Data: append([]byte(nil), au...), Keyframe: h264.IsKeyframe(au), Arrived: time.Now()}
		au = au[:0]
		if frame.Keyframe && !broken {
			synced = true
		}
		v.mu.Lock()
		if broken || !synced {
			v.broken++
			if broken {
				synced = false
			}
		} else {
			v.received++
			if frame.Keyframe && v.firstKey.IsZero() {
				v.firstKey = frame.Arrived
			}
		}
		v.mu.Unlock()
		broken = false
		if !synced {
			continue
		}
		select {
		case v.frames <- frame:
		default:
		}
	}
}

// ErrNoH264 is returned when a frame does not hold H.264 parameter sets where expected.
var ErrNoH264 = errors.New("no SPS in keyframe")

// CheckKeyframe parses a keyframe's SPS and returns the picture size.
func CheckKeyframe(f Frame) (w, h int, err error) {
	sps, _ := h264.ParamSets(f.Data)
	if sps == nil {
		return 0, 0, ErrNoH264
	}
	info, err := h264.ParseSPS(sps)
	if err != nil {
		return 0, 0, fmt.Errorf("keyframe SPS: %w", err)
	}
	return info.Width, info.Height, nil
}

// Transceivers exposes the connection's transceivers (tests send RTCP with them).
func (v *Viewer) Transceivers() []*pion.RTPTransceiver { return v.pc.GetTransceivers() }

// WriteRTCP sends RTCP packets (e.g. a PLI) to the camera.
func (v *Viewer) WriteRTCP(pkts []rtcp.Packet) error { return v.pc.WriteRTCP(pkts) }
