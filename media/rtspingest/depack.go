package rtspingest

import (
	"errors"
	"fmt"

	"github.com/edgecam/edgecam/media/h264"
	"github.com/pion/rtp"
)

// RTP payload types of RFC 6184 that carry more than one NAL unit or a part of one.
const (
	nalSTAPA = 24
	nalFUA   = 28
)

var startCode = []byte{0, 0, 0, 1}

// errUnsupported marks payloads of the interleaved packetisation mode (STAP-B, MTAP, FU-B).
var errUnsupported = errors.New("RTP payload of the interleaved packetization mode (STAP-B, MTAP or FU-B) is not supported")

// depacketizer assembles the RTP payloads of one H.264 stream (RFC 6184, single NAL unit
// and non-interleaved modes: single NAL units, STAP-A, FU-A) into Annex-B access units, in
// one buffer that it reuses: after its first GOP it allocates nothing per packet.
//
// An access unit ends at a packet with the marker bit, or where the RTP timestamp changes
// (some cameras never set the marker). An access unit that lost a packet is dropped, and
// onLoss is called before anything after the loss is emitted, so that the consumer can
// wait for the next keyframe. Keyframes get the newest SPS and PPS in front when they do
// not carry them (cameras that send them once, or only in the SDP).
type depacketizer struct {
	// emit receives each complete access unit; au is valid only during the call.
	emit func(au []byte, ts uint32, keyframe bool)
	// onLoss is called when packets were lost or could not be read.
	onLoss func(err error)

	buf     []byte // the access unit being assembled, Annex-B
	out     []byte // a keyframe with the parameter sets put in front
	ts      uint32 // RTP timestamp of buf
	started bool   // buf belongs to ts
	broken  bool   // a packet of buf was lost: drop it
	inFU    bool   // a fragmented NAL unit is open at the end of buf
	nalAt   int    // where the open fragmented NAL unit starts in buf
	idr     bool
	vcl     bool // buf holds a coded slice
	hasSPS  bool
	hasPPS  bool

	sps, pps []byte // newest parameter sets, in-band or from the SDP

	haveSeq bool
	nextSeq uint16
	lost    uint64 // packets lost
}

// setParams records parameter sets (the SDP's sprop-parameter-sets).
func (d *depacketizer) setParams(sps, pps []byte) {
	if len(sps) > 0 {
		d.sps = append(d.sps[:0], sps...)
	}
	if len(pps) > 0 {
		d.pps = append(d.pps[:0], pps...)
	}
}

func (d *depacketizer) clear() {
	d.buf = d.buf[:0]
	d.started, d.broken, d.inFU = false, false, false
	d.idr, d.vcl, d.hasSPS, d.hasPPS = false, false, false, false
}

// push takes the next RTP packet of the stream.
func (d *depacketizer) push(pkt *rtp.Packet) {
	if d.haveSeq && pkt.SequenceNumber != d.nextSeq {
		gap := pkt.SequenceNumber - d.nextSeq
		if gap >= 0x8000 { // older than expected: a duplicate or a late packet
			return
		}
		d.lost += uint64(gap)
		d.broken = true
		d.onLoss(fmt.Errorf("%d RTP packet(s) lost", gap))
	}
	d.haveSeq, d.nextSeq = true, pkt.SequenceNumber+1

	if d.started && pkt.Timestamp != d.ts {
		d.finish()
	}
	if !d.started {
		d.started, d.ts = true, pkt.Timestamp
	}
	if err := d.payload(pkt.Payload); err != nil {
		if !d.broken {
			d.onLoss(err)
		}
		d.broken = true
	}
	if pkt.Marker {
		d.finish()
	}
}

// payload appends one RTP payload's NAL units to buf.
func (d *depacketizer) payload(p []byte) error {
	if len(p) == 0 {
		return nil // padding only
	}
	switch typ := p[0] & 0x1f; {
	case typ >= 1 && typ <= 23:
		if d.inFU {
			d.inFU = false
			return errors.New("a fragmented NAL unit did not end")
		}
		d.nal(p)
	case typ == nalSTAPA:
		if d.inFU {
			d.inFU = false
			return errors.New("a fragmented NAL unit did not end")
		}
		p = p[1:]
		for len(p) > 0 {
			if len(p) < 2 {
				return errors.New("malformed STAP-A packet")
			}
			n := int(p[0])<<8 | int(p[1])
			p = p[2:]
			if n == 0 || n > len(p) {
				return errors.New("malformed STAP-A packet")
			}
			d.nal(p[:n])
			p = p[n:]
		}
	case typ == nalFUA:
		if len(p) < 2 {
			return errors.New("malformed FU-A packet")
		}
		start, end := p[1]&0x80 != 0, p[1]&0x40 != 0
		if start {
			if d.inFU {
				d.inFU = false
				return errors.New("a fragmented NAL unit did not end")
			}
			d.nalAt = len(d.buf) + len(startCode)
			d.buf = append(d.buf, startCode...)
			d.buf = append(d.buf, p[0]&0xe0|p[1]&0x1f)
			d.inFU = true
		} else if !d.inFU {
			return errors.New("a fragmented NAL unit lost its start")
		}
		d.buf = append(d.buf, p[2:]...)
		if end {
			d.inFU = false
			d.note(d.buf[d.nalAt:])
		}
	default:
		return errUnsupported
	}
	return nil
}

// nal appends a whole NAL unit.
func (d *depacketizer) nal(n []byte) {
	d.buf = append(d.buf, startCode...)
	d.buf = append(d.buf, n...)
	d.note(n)
}

// note records what a complete NAL unit is.
func (d *depacketizer) note(n []byte) {
	switch h264.TypeOf(n) {
	case h264.NALIDR:
		d.idr, d.vcl = true, true
	case h264.NALSlice, h264.NALSliceA, 3, 4:
		d.vcl = true
	case h264.NALSPS:
		d.hasSPS = true
		if string(n) != string(d.sps) {
			d.sps = append(d.sps[:0], n...)
		}
	case h264.NALPPS:
		d.hasPPS = true
		if string(n) != string(d.pps) {
			d.pps = append(d.pps[:0], n...)
		}
	}
}

// finish emits the access unit in buf, unless it is broken, incomplete or holds no picture
// (parameter sets sent on their own are kept for the next keyframe).
func (d *depacketizer) finish() {
	defer d.clear()
	if d.broken || d.inFU || !d.vcl {
		if d.inFU && !d.broken {
			d.onLoss(errors.New("a fragmented NAL unit did not end"))
		}
		return
	}
	au := d.buf
	if d.idr && (!d.hasSPS && len(d.sps) > 0 || !d.hasPPS && len(d.pps) > 0) {
		// The parameter sets go after an access unit delimiter, before everything else.
		head := 0
		if len(d.buf) >= len(startCode)+2 && h264.TypeOf(d.buf[len(startCode):]) == h264.NALAUD {
			head = len(startCode) + 2
		}
		d.out = append(d.out[:0], d.buf[:head]...)
		if !d.hasSPS && len(d.sps) > 0 {
			d.out = append(append(d.out, startCode...), d.sps...)
		}
		if !d.hasPPS && len(d.pps) > 0 {
			d.out = append(append(d.out, startCode...), d.pps...)
		}
		au = append(d.out, d.buf[head:]...)
		d.out = au
	}
	d.emit(au, d.ts, d.idr)
}
