package mkv

import (
	"encoding/binary"
	"math"
)

// AppendHeader appends an element header: the ID and a size field (UnknownSize writes the
// 8-byte all-ones size).
func AppendHeader(dst []byte, id ID, size int64) []byte {
	switch {
	case id >= 1<<24:
		dst = append(dst, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<16:
		dst = append(dst, byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<8:
		dst = append(dst, byte(id>>8), byte(id))
	default:
		dst = append(dst, byte(id))
	}
	if size == UnknownSize {
		return append(dst, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	}
	n := 1
	for n < 8 && uint64(size) >= (uint64(1)<<(7*n))-1 {
		n++
	}
	v := uint64(size) | uint64(1)<<(7*n)
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// Element returns an element with body.
func Element(id ID, body []byte) []byte {
	out := AppendHeader(make([]byte, 0, len(body)+12), id, int64(len(body)))
	return append(out, body...)
}

// Concat joins elements (or any byte slices).
func Concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// UintElement is an unsigned integer element in as few bytes as it needs.
func UintElement(id ID, v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	i := 0
	for i < 7 && b[i] == 0 {
		i++
	}
	return Element(id, b[i:])
}

// FloatElement is an 8-byte float element.
func FloatElement(id ID, v float64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], math.Float64bits(v))
	return Element(id, b[:])
}

// StringElement is a string element.
func StringElement(id ID, s string) []byte { return Element(id, []byte(s)) }

// EBMLHeader is the EBML header of a Matroska file (version 1, DocType matroska version 4).
func EBMLHeader() []byte {
	return Element(IDEBML, Concat(
		UintElement(IDEBMLVersion, 1), UintElement(IDEBMLReadVersion, 1),
		UintElement(IDEBMLMaxIDLength, 4), UintElement(IDEBMLMaxSizeLen, 8),
		StringElement(IDDocType, "matroska"), UintElement(IDDocTypeVersion, 4), UintElement(IDDocTypeRead, 2),
	))
}

// TagsElement is a Tags element with one Tag holding the simple tags, in order.
func TagsElement(tags []SimpleTag) []byte {
	var simple [][]byte
	for _, t := range tags {
		simple = append(simple, Element(IDSimpleTag, Concat(StringElement(IDTagName, t.Name), StringElement(IDTagString, t.Value))))
	}
	return Element(IDTags, Element(IDTag, Concat(Element(IDTargets, nil), Concat(simple...))))
}

// SimpleBlockElement is a SimpleBlock of track (1 to 126) with a relative timecode.
func SimpleBlockElement(track uint64, timecode int16, keyframe bool, frame []byte) []byte {
	body := make([]byte, 0, len(frame)+4)
	body = append(body, byte(0x80|track&0x7F))
	body = append(body, byte(uint16(timecode)>>8), byte(uint16(timecode)))
	var flags byte
	if keyframe {
		flags = 0x80
	}
	body = append(body, flags)
	return Element(IDSimpleBlock, append(body, frame...))
}

// InfoElement is a Segment Info with a TimecodeScale and the muxing and writing app.
func InfoElement(timecodeScale uint64, app string) []byte {
	return Element(IDInfo, Concat(UintElement(IDTimecodeScale, timecodeScale), StringElement(IDMuxingApp, app), StringElement(IDWritingApp, app)))
}

// TracksElement is a Tracks element with one TrackEntry per track (video tracks get their
// pixel size).
func TracksElement(tracks ...Track) []byte {
	var entries [][]byte
	for _, t := range tracks {
		fields := [][]byte{UintElement(IDTrackNumber, t.Number), UintElement(IDTrackUID, max(t.UID, t.Number)), UintElement(IDTrackType, t.Type), StringElement(IDCodecID, t.CodecID)}
		if len(t.CodecPrivate) > 0 {
			fields = append(fields, Element(IDCodecPrivate, t.CodecPrivate))
		}
		if t.PixelWidth > 0 || t.PixelHeight > 0 {
			fields = append(fields, Element(IDVideo, Concat(UintElement(IDPixelWidth, t.PixelWidth), UintElement(IDPixelHeight, t.PixelHeight))))
		}
		entries = append(entries, Element(IDTrackEntry, Concat(fields...)))
	}
	return Element(IDTracks, Concat(entries...))
}

// ClusterStart opens a Cluster of unknown size at timecode (its blocks follow).
func ClusterStart(timecode uint64) []byte {
	return append(AppendHeader(nil, IDCluster, UnknownSize), UintElement(IDTimecode, timecode)...)
}

// StreamStart is what a producer sends first: the EBML header, a Segment of unknown size,
// Info and Tracks.
func StreamStart(timecodeScale uint64, app string, tracks ...Track) []byte {
	return Concat(EBMLHeader(), AppendHeader(nil, IDSegment, UnknownSize), InfoElement(timecodeScale, app), TracksElement(tracks...))
}
