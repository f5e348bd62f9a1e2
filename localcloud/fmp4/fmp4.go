// Package fmp4 writes fragmented MP4 (ISO BMFF) for one H.264 video track: an
// initialisation segment (ftyp + moov) and media fragments (moof + mdat), the form HLS
// (fMP4 segments) and GetClip serve. Samples are AVCC (length-prefixed NAL units), as
// Matroska's V_MPEG4/ISO/AVC blocks already are.
package fmp4

import (
	"encoding/binary"
	"errors"
)

// Track describes the video track.
type Track struct {
	ID            uint32 // default 1
	Timescale     uint32 // units per second (default 1000)
	Width, Height uint32
	// AVCC is the AVCDecoderConfigurationRecord (Matroska's CodecPrivate).
	AVCC []byte
}

// Sample is one access unit.
type Sample struct {
	Duration uint32 // in Track.Timescale units
	Keyframe bool
	Data     []byte // AVCC
}

func (t Track) withDefaults() Track {
	if t.ID == 0 {
		t.ID = 1
	}
	if t.Timescale == 0 {
		t.Timescale = 1000
	}
	return t
}

type box struct{ b []byte }

func newBox(typ string) *box {
	b := &box{b: make([]byte, 8, 64)}
	copy(b.b[4:], typ)
	return b
}

func newFullBox(typ string, version byte, flags uint32) *box {
	b := newBox(typ)
	return b.u32(uint32(version)<<24 | flags&0xFFFFFF)
}

func (b *box) u8(v byte) *box    { b.b = append(b.b, v); return b }
func (b *box) u16(v uint16) *box { b.b = binary.BigEndian.AppendUint16(b.b, v); return b }
func (b *box) u32(v uint32) *box { b.b = binary.BigEndian.AppendUint32(b.b, v); return b }
func (b *box) u64(v uint64) *box { b.b = binary.BigEndian.AppendUint64(b.b, v); return b }
func (b *box) raw(p []byte) *box { b.b = append(b.b, p...); return b }
func (b *box) zeros(n int) *box  { b.b = append(b.b, make([]byte, n)...); return b }
func (b *box) str(s string) *box { b.b = append(b.b, s...); return b }
func (b *box) add(children ...*box) *box {
	for _, c := range children {
		b.b = append(b.b, c.bytes()...)
	}
	return b
}

func (b *box) bytes() []byte {
	binary.BigEndian.PutUint32(b.b[:4], uint32(len(b.b)))
	return b.b
}

var identity = []uint32{0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000}

func (b *box) matrix() *box {
	for _, v := range identity {
		b.u32(v)
	}
	return b
}

// Init returns the initialisation segment: ftyp and moov with an avc1 sample entry.
func Init(t Track) ([]byte, error) {
	t = t.withDefaults()
	if len(t.AVCC) < 7 || t.AVCC[0] != 1 {
		return nil, errors.New("the H.264 codec private data is not an AVCDecoderConfigurationRecord")
	}
	ftyp := newBox("ftyp").str("iso5").u32(512).str("iso5").str("iso6").str("mp41").str("avc1")
	mvhd := newFullBox("mvhd", 0, 0).u32(0).u32(0).u32(t.Timescale).u32(0).u32(0x00010000).u16(0x0100).zeros(10).matrix().zeros(24).u32(t.ID + 1)
	tkhd := newFullBox("tkhd", 0, 3).u32(0).u32(0).u32(t.ID).u32(0).u32(0).zeros(8).u16(0).u16(0).u16(0).u16(0).matrix().u32(t.Width << 16).u32(t.Height << 16)
	mdhd := newFullBox("mdhd", 0, 0).u32(0).u32(0).u32(t.Timescale).u32(0).u16(0x55C4).u16(0)
	hdlr := newFullBox("hdlr", 0, 0).u32(0).str("vide").zeros(12).str("VideoHandler").u8(0)
	vmhd := newFullBox("vmhd", 0, 1).u16(0).zeros(6)
	dinf := newBox("dinf").add(newFullBox("dref", 0, 0).u32(1).add(newFullBox("url ", 0, 1)))
	avc1 := newBox("avc1").zeros(6).u16(1).u16(0).u16(0).zeros(12).u16(uint16(t.Width)).u16(uint16(t.Height)).
		u32(0x00480000).u32(0x00480000).u32(0).u16(1).zeros(32).u16(0x0018).u16(0xFFFF).
		add(newBox("avcC").raw(t.AVCC))
	stbl := newBox("stbl").add(
		newFullBox("stsd", 0, 0).u32(1).add(avc1),
		newFullBox("stts", 0, 0).u32(0),
		newFullBox("stsc", 0, 0).u32(0),
		newFullBox("stsz", 0, 0).u32(0).u32(0),
		newFullBox("stco", 0, 0).u32(0),
	)
	minf := newBox("minf").add(vmhd, dinf, stbl)
	trak := newBox("trak").add(tkhd, newBox("mdia").add(mdhd, hdlr, minf))
	mvex := newBox("mvex").add(newFullBox("trex", 0, 0).u32(t.ID).u32(1).u32(0).u32(0).u32(0))
	moov := newBox("moov").add(mvhd, trak, mvex)
	return append(ftyp.bytes(), moov.bytes()...), nil
}

// Fragment returns one media fragment (moof + mdat): sequence numbers start at 1;
// baseDecodeTime is the first sample's decode time in Track.Timescale units.
func Fragment(t Track, sequence uint32, baseDecodeTime uint64, samples []Sample) []byte {
	t = t.withDefaults()
	trun := newFullBox("trun", 0, 0x000001|0x000100|0x000200|0x000400).u32(uint32(len(samples)))
	offsetAt := len(trun.b)
	trun.u32(0) // data offset, patched below
	size := 0
	for _, s := range samples {
		flags := uint32(0x01010000) // depends on others, not a sync sample
		if s.Keyframe {
			flags = 0x02000000
		}
		trun.u32(s.Duration).u32(uint32(len(s.Data))).u32(flags)
		size += len(s.Data)
	}
	tfhd := newFullBox("tfhd", 0, 0x020000).u32(t.ID) // default-base-is-moof
	tfdt := newFullBox("tfdt", 1, 0).u64(baseDecodeTime)
	mfhd := newFullBox("mfhd", 0, 0).u32(sequence)
	traf := newBox("traf").add(tfhd, tfdt)
	trunBytes := trun.bytes()
	moofLen := 8 + len(mfhd.bytes()) + len(traf.b) + len(trunBytes)
	binary.BigEndian.PutUint32(trunBytes[offsetAt:], uint32(moofLen+8))
	traf.raw(trunBytes)
	moof := newBox("moof").add(mfhd, traf).bytes()
	out := make([]byte, 0, len(moof)+8+size)
	out = append(out, moof...)
	out = binary.BigEndian.AppendUint32(out, uint32(8+size))
	out = append(out, "mdat"...)
	for _, s := range samples {
		out = append(out, s.Data...)
	}
	return out
}
