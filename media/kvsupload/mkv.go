package kvsupload

import (
	"encoding/binary"
	"fmt"

	"github.com/edgecam/edgecam/media/h264"
)

// Matroska element IDs written by the fragmenter (https://www.matroska.org/technical/elements.html).
const (
	idEBML               = 0x1A45DFA3
	idEBMLVersion        = 0x4286
	idEBMLReadVersion    = 0x42F7
	idEBMLMaxIDLength    = 0x42F2
	idEBMLMaxSizeLength  = 0x42F3
	idDocType            = 0x4282
	idDocTypeVersion     = 0x4287
	idDocTypeReadVersion = 0x4285
	idSegment            = 0x18538067
	idInfo               = 0x1549A966
	idTimecodeScale      = 0x2AD7B1
	idMuxingApp          = 0x4D80
	idWritingApp         = 0x5741
	idTracks             = 0x1654AE6B
	idTrackEntry         = 0xAE
	idTrackNumber        = 0xD7
	idTrackUID           = 0x73C5
	idTrackType          = 0x83
	idCodecID            = 0x86
	idCodecPrivate       = 0x63A2
	idVideo              = 0xE0
	idPixelWidth         = 0xB0
	idPixelHeight        = 0xBA
	idCluster            = 0x1F43B675
	idTimecode           = 0xE7
	idSimpleBlock        = 0xA3
	idTags               = 0x1254C367
	idTag                = 0x7373
	idSimpleTag          = 0x67C8
	idTagName            = 0x45A3
	idTagString          = 0x4487
)

// CodecID is the Matroska codec of the one video track (KVS: track 1 must be H.264 for GetClip/HLS).
const CodecID = "V_MPEG4/ISO/AVC"

// EndOfFragmentTag is the tag a producer sends to close its last fragment before the end of stream.
const EndOfFragmentTag = "AWS_KINESISVIDEO_END_OF_FRAGMENT"

// unknownSize is the 8-byte EBML "unknown size" (all value bits set).
var unknownSize = []byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}

// appendID appends an element ID (IDs carry their own length marker).
func appendID(b []byte, id uint32) []byte {
	switch {
	case id >= 1<<24:
		return append(b, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<16:
		return append(b, byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<8:
		return append(b, byte(id>>8), byte(id))
	}
	return append(b, byte(id))
}

// appendSize appends an element data size as the shortest EBML variable-size integer.
func appendSize(b []byte, n int) []byte {
	switch {
	case n < 1<<7-1:
		return append(b, 0x80|byte(n))
	case n < 1<<14-1:
		return append(b, 0x40|byte(n>>8), byte(n))
	case n < 1<<21-1:
		return append(b, 0x20|byte(n>>16), byte(n>>8), byte(n))
	case n < 1<<28-1:
		return append(b, 0x10|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x01, 0, 0, byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendUint(b []byte, id uint32, v uint64) []byte {
	n := 1
	for x := v >> 8; x > 0; x >>= 8 {
		n++
	}
	b = appendID(b, id)
	b = appendSize(b, n)
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

func appendBytes(b []byte, id uint32, v []byte) []byte {
	b = appendID(b, id)
	b = appendSize(b, len(v))
	return append(b, v...)
}

func appendString(b []byte, id uint32, v string) []byte {
	b = appendID(b, id)
	b = appendSize(b, len(v))
	return append(b, v...)
}

// appendMaster appends a master element around what body appends.
func appendMaster(b []byte, id uint32, body func([]byte) []byte) []byte {
	inner := body(nil)
	b = appendID(b, id)
	b = appendSize(b, len(inner))
	return append(b, inner...)
}

// Track describes the one H.264 video track of a stream.
type Track struct {
	SPS, PPS      []byte // NAL units without start codes
	Width, Height int
	Codec         string // RFC 6381, e.g. avc1.64001f
}

// NewTrack builds a track from an SPS and a PPS.
func NewTrack(sps, pps []byte) (Track, error) {
	info, err := h264.ParseSPS(sps)
	if err != nil {
		return Track{}, fmt.Errorf("kvsupload: the stream's SPS: %w", err)
	}
	if len(pps) == 0 || h264.TypeOf(pps) != h264.NALPPS {
		return Track{}, fmt.Errorf("kvsupload: no PPS next to the SPS")
	}
	return Track{SPS: append([]byte(nil), sps...), PPS: append([]byte(nil), pps...), Width: info.Width, Height: info.Height, Codec: info.Codec()}, nil
}

// AVCC returns the AVCDecoderConfigurationRecord (ISO/IEC 14496-15) of the track, with 4-byte
// NAL lengths: Matroska's CodecPrivate for V_MPEG4/ISO/AVC.
func (t Track) AVCC() []byte {
	b := make([]byte, 0, 11+len(t.SPS)+len(t.PPS))
	b = append(b, 1, t.SPS[1], t.SPS[2], t.SPS[3], 0xFC|3, 0xE0|1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.SPS)))
	b = append(b, t.SPS...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.PPS)))
	return append(b, t.PPS...)
}

// Header returns what starts a PutMedia body: the EBML header, an unknown-size Segment,
// Info (TimecodeScale 1 ms) and Tracks (track 1, H.264, avcC CodecPrivate, pixel size).
func (t Track) Header() []byte {
	b := appendMaster(nil, idEBML, func(b []byte) []byte {
		b = appendUint(b, idEBMLVersion, 1)
		b = appendUint(b, idEBMLReadVersion, 1)
		b = appendUint(b, idEBMLMaxIDLength, 4)
		b = appendUint(b, idEBMLMaxSizeLength, 8)
		b = appendString(b, idDocType, "matroska")
		b = appendUint(b, idDocTypeVersion, 2)
		return appendUint(b, idDocTypeReadVersion, 2)
	})
	b = appendID(b, idSegment)
	b = append(b, unknownSize...)
	b = appendMaster(b, idInfo, func(b []byte) []byte {
		b = appendUint(b, idTimecodeScale, 1_000_000)
		b = appendString(b, idMuxingApp, "edgecam")
		return appendString(b, idWritingApp, "edgecam kvsupload")
	})
	return appendMaster(b, idTracks, func(b []byte) []byte {
		return appendMaster(b, idTrackEntry, func(b []byte) []byte {
			b = appendUint(b, idTrackNumber, 1)
			b = appendUint(b, idTrackUID, 1)
			b = appendUint(b, idTrackType, 1)
			b = appendString(b, idCodecID, CodecID)
			b = appendBytes(b, idCodecPrivate, t.AVCC())
			return appendMaster(b, idVideo, func(b []byte) []byte {
				b = appendUint(b, idPixelWidth, uint64(t.Width))
				return appendUint(b, idPixelHeight, uint64(t.Height))
			})
		})
	})
}

// EndOfStream returns the Tags element that closes the last fragment of a PutMedia body.
func EndOfStream() []byte {
	return appendMaster(nil, idTags, func(b []byte) []byte {
		return appendMaster(b, idTag, func(b []byte) []byte {
			return appendMaster(b, idSimpleTag, func(b []byte) []byte {
				b = appendString(b, idTagName, EndOfFragmentTag)
				return appendString(b, idTagString, "0")
			})
		})
	})
}
