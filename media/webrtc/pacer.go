package webrtc

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/pion/rtp"
	pion "github.com/pion/webrtc/v4"
)

// The catch-up. A new viewer starts on the current GOP's keyframe and is sent the rest of
// the GOP (the backlog) before live units, so that its picture starts at once. Sent as fast
// as the CPU allows, a 2 s backlog of a 2 Mbit/s stream is half a megabyte in a few
// milliseconds: more than a socket buffer, a Wi-Fi link or a home router's queue holds,
// so the joining viewer — and often those already watching — lose packets. Instead:
//   - the keyframe goes first, in a few bursts over about keyframeSpread, so that the first
//     picture arrives at once (each pause costs a wake-up, which a busy device delays) but
//     never as one burst;
//   - the rest of the backlog (and every unit that is late when it is sent) follows at
//     Options.CatchUpSpeed times the stream's measured rate (a token bucket on bytes, at most
//     a few packets at once);
//   - units sent while catching up carry RTP timestamps that advance with the time they
//     actually leave (but never more than the unit's own duration), so that a player's
//     jitter buffer sees no delay growing and plays the backlog fast forward.
const (
	// catchUp: a unit older than this when it is sent belongs to the backlog.
	catchUp = 100 * time.Millisecond
	// keyframeSpread is how long the first keyframe's packets are spread over at least, in
	// keyframeBursts bursts.
	keyframeSpread = 4 * time.Millisecond
	keyframeBursts = 3
	// pacerQuantum: the pacer sleeps once it is this far ahead of its rate, so packets leave
	// in bursts of about rate × pacerQuantum (a timer cannot wake much more often).
	pacerQuantum = time.Millisecond
	// pacerCredit bounds how much a late wake-up may be made up for at once.
	pacerCredit = 4 * time.Millisecond
	// rtpMTU is the largest RTP packet (header included), as pion's own packetiser uses.
	rtpMTU = 1200
	// minStreamRate floors the measured stream rate, in bytes/s (250 kbit/s).
	minStreamRate = 250_000 / 8
)

// streamRate measures the stream's rate in bytes/s from what the Hub's ring holds. Less than
// a second of video (just after a keyframe, with no pre-roll) overweights the keyframe and
// says little: then the rate is at least the configured initial bitrate.
func (s *Server) streamRate() float64 {
	st := s.opts.Hub.Stats()
	if st.RingSpan >= time.Second {
		return max(float64(st.RingBytes)/st.RingSpan.Seconds(), minStreamRate)
	}
	return max(float64(st.RingBytes), float64(s.opts.InitialBitrate)/8, minStreamRate)
}

// pacer is a token bucket on bytes.
type pacer struct {
	rate    float64       // bytes per second
	quantum time.Duration // how far ahead of the rate it may get before it sleeps (default pacerQuantum)
	debt    float64       // bytes sent beyond what the rate allowed so far (negative: credit)
	last    time.Time
	timer   *time.Timer
}

// wait accounts for n bytes about to be sent, sleeping first when the bucket is empty.
func (p *pacer) wait(ctx context.Context, n int) error {
	now := time.Now()
	if !p.last.IsZero() {
		p.debt -= now.Sub(p.last).Seconds() * p.rate
		p.debt = max(p.debt, -max(p.rate*pacerCredit.Seconds(), 2*rtpMTU))
	}
	p.last = now
	p.debt += float64(n)
	d := time.Duration(p.debt / p.rate * float64(time.Second))
	if d < max(p.quantum, pacerQuantum) {
		return nil
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	case <-p.timer.C:
	}
	after := time.Now()
	p.debt -= after.Sub(now).Seconds() * p.rate
	p.last = after
	return nil
}

// packetizer splits Annex-B access units into RTP payloads (RFC 6184, packetization-mode=1:
// single NAL unit packets, SPS and PPS in one STAP-A, FU-A for large units) without
// allocating: payloads are sub-slices of the unit, or of one buffer reused for every
// fragment (each payload is written out before the next is made).
type packetizer struct {
	maxPayload int
	buf        []byte
}

func newPacketizer(mtu int) *packetizer {
	return &packetizer{maxPayload: mtu - 12, buf: make([]byte, mtu)}
}

// packetize calls emit for each payload of au in order; last marks the unit's final packet.
func (p *packetizer) packetize(au []byte, emit func(payload []byte, last bool) error) error {
	var sps, pps, pending []byte
	flushParams := func() error {
		if sps != nil && pps != nil && 1+2+len(sps)+2+len(pps) <= p.maxPayload {
			b := p.buf[:0]
			b = append(b, sps[0]&0x60|pps[0]&0x60|24) // STAP-A, the highest NRI of the two
			b = binary.BigEndian.AppendUint16(b, uint16(len(sps)))
			b = append(b, sps...)
			b = binary.BigEndian.AppendUint16(b, uint16(len(pps)))
			b = append(b, pps...)
			sps, pps = nil, nil
			return emit(b, false)
		}
		for _, ps := range [][]byte{sps, pps} {
			if ps != nil {
				if err := p.nal(ps, false, emit); err != nil {
					return err
				}
			}
		}
		sps, pps = nil, nil
		return nil
	}
	for nal := range h264.NALUnits(au) {
		switch h264.TypeOf(nal) {
		case h264.NALType(9), h264.NALType(12): // access unit delimiter, filler: not sent
			continue
		case h264.NALType(7):
			sps = nal
			continue
		case h264.NALType(8):
			pps = nal
			continue
		}
		if pending != nil {
			if err := p.nal(pending, false, emit); err != nil {
				return err
			}
		}
		if err := flushParams(); err != nil {
			return err
		}
		pending = nal
	}
	if pending == nil { // parameter sets alone: they end the unit
		if sps != nil && pps == nil {
			return p.nal(sps, true, emit)
		}
		if sps == nil && pps != nil {
			return p.nal(pps, true, emit)
		}
		if sps != nil {
			if err := p.nal(sps, false, emit); err != nil {
				return err
			}
			return p.nal(pps, true, emit)
		}
		return nil
	}
	return p.nal(pending, true, emit)
}

// nal emits one NAL unit: whole when it fits, else as FU-A fragments.
func (p *packetizer) nal(nal []byte, last bool, emit func([]byte, bool) error) error {
	if len(nal) <= p.maxPayload {
		return emit(nal, last)
	}
	indicator := nal[0]&0xe0 | 28
	typ := nal[0] & 0x1f
	data := nal[1:]
	chunk := p.maxPayload - 2
	for first := true; len(data) > 0; first = false {
		n := min(chunk, len(data))
		header := typ
		if first {
			header |= 0x80
		}
		end := n == len(data)
		if end {
			header |= 0x40
		}
		b := append(p.buf[:0], indicator, header)
		b = append(b, data[:n]...)
		if err := emit(b, last && end); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// transmitter writes a session's access units to its track as RTP, pacing the catch-up.
type transmitter struct {
	track       *pion.TrackLocalStaticRTP
	pk          *packetizer
	pace        pacer
	catchUpRate float64 // bytes/s
	speed       float64 // catch-up rate ÷ stream rate
	pkt         rtp.Packet

	// The stream's rate as the units themselves tell it (bytes over their durations): the
	// estimate the session started with may be far off (a ring holding a fraction of a
	// second, a bitrate that changed), and a catch-up slower than the stream never ends.
	meterBytes, interBytes int
	meterDur, interDur     time.Duration

	started  bool
	seq      uint16
	ts       uint32
	prevDur  time.Duration // the previous unit's duration
	prevSent time.Time     // when the previous unit's first packet left
	prevPTS  time.Duration

	// per unit, read by emit
	ctx    context.Context
	behind bool
	first  bool
}

// newTransmitter: streamRate is the first estimate of the stream's rate in bytes/s; the
// backlog goes at speed times the stream's rate.
func newTransmitter(track *pion.TrackLocalStaticRTP, streamRate, speed float64, seq uint16, ts uint32) *transmitter {
	t := &transmitter{track: track, pk: newPacketizer(rtpMTU), catchUpRate: streamRate * speed, speed: speed, seq: seq, ts: ts}
	t.pace.rate = t.catchUpRate
	t.pkt.Version = 2
	return t
}

// send writes one unit. A unit that is behind (part of the backlog, or late) is paced.
func (t *transmitter) send(ctx context.Context, au media.AccessUnit, behind bool) error {
	d := au.Duration
	if d <= 0 && t.started {
		d = au.PTS - t.prevPTS
	}
	if d <= 0 || d > time.Second {
		d = 33 * time.Millisecond
	}
	t.measure(len(au.Data), d, au.Keyframe)
	t.ctx, t.behind, t.first = ctx, behind, true
	if behind && !t.started && au.Keyframe {
		// The first picture: spread over keyframeSpread, unless the catch-up rate is faster.
		t.pace.rate = max(t.catchUpRate, float64(len(au.Data))/keyframeSpread.Seconds())
		t.pace.quantum = keyframeSpread / keyframeBursts
	}
	err := t.pk.packetize(au.Data, t.emit)
	t.pace.rate, t.pace.quantum = t.catchUpRate, 0
	t.prevPTS, t.prevDur, t.ctx = au.PTS, d, nil
	return err
}

// measure adds a unit to the rate meter. From 200 ms of inter frames on, the catch-up is
// never slower than speed times their rate (keyframes are left out of this early measure: the
// GOP's keyframe would make a fraction of a second look several times the stream's rate);
// every 2 s of stream, it becomes speed times the rate of everything sent.
func (t *transmitter) measure(n int, d time.Duration, keyframe bool) {
	t.meterBytes += n
	t.meterDur += d
	if !keyframe {
		t.interBytes += n
		t.interDur += d
	}
	switch {
	case t.meterDur >= 2*time.Second:
		t.catchUpRate = t.speed * max(float64(t.meterBytes)/t.meterDur.Seconds(), minStreamRate)
		t.meterBytes, t.meterDur, t.interBytes, t.interDur = 0, 0, 0, 0
	case t.interDur >= 200*time.Millisecond:
		t.catchUpRate = max(t.catchUpRate, t.speed*float64(t.interBytes)/t.interDur.Seconds())
	}
	t.pace.rate = t.catchUpRate
}

func (t *transmitter) emit(payload []byte, last bool) error {
	if t.behind {
		if err := t.pace.wait(t.ctx, len(payload)+12); err != nil {
			return err
		}
	}
	if t.first {
		t.first = false
		now := time.Now()
		if t.started {
			adv := t.prevDur
			if t.behind { // as the units actually leave, so that a player plays them fast forward
				adv = min(max(now.Sub(t.prevSent), time.Millisecond), t.prevDur)
			}
			t.ts += uint32(adv * 90000 / time.Second)
		}
		t.started, t.prevSent = true, now
	}
	t.pkt.Marker = last
	t.pkt.SequenceNumber = t.seq
	t.pkt.Timestamp = t.ts
	t.pkt.Payload = payload
	t.seq++
	return t.track.WriteRTP(&t.pkt)
}
