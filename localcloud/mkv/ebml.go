// Package mkv reads a Matroska (MKV) stream element by element as it arrives, the way a
// Kinesis Video Streams producer sends it to PutMedia: an EBML header, a Segment and Clusters
// of unknown size, and no index. It also writes the few elements localcloud stores and
// serves (EBML header, Segment, Cluster, Tags).
//
// github.com/at-wat/ebml-go unmarshals whole documents into structs; a PutMedia body never
// ends and must be acknowledged fragment by fragment, so this reader works on element
// headers and hands each Cluster's children out as they are read.
package mkv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// ID is an EBML element ID with its length marker bits kept (0x1A45DFA3 for the EBML header).
type ID uint32

// Element IDs this package knows.
const (
	IDEBML            ID = 0x1A45DFA3
	IDEBMLVersion     ID = 0x4286
	IDEBMLReadVersion ID = 0x42F7
	IDEBMLMaxIDLength ID = 0x42F2
	IDEBMLMaxSizeLen  ID = 0x42F3
	IDDocType         ID = 0x4282
	IDDocTypeVersion  ID = 0x4287
	IDDocTypeRead     ID = 0x4285
	IDSegment         ID = 0x18538067
	IDSeekHead        ID = 0x114D9B74
	IDInfo            ID = 0x1549A966
	IDTimecodeScale   ID = 0x2AD7B1
	IDDuration        ID = 0x4489
	IDMuxingApp       ID = 0x4D80
	IDWritingApp      ID = 0x5741
	IDTracks          ID = 0x1654AE6B
	IDTrackEntry      ID = 0xAE
	IDTrackNumber     ID = 0xD7
	IDTrackUID        ID = 0x73C5
	IDTrackType       ID = 0x83
	IDCodecID         ID = 0x86
	IDCodecPrivate    ID = 0x63A2
	IDVideo           ID = 0xE0
	IDPixelWidth      ID = 0xB0
	IDPixelHeight     ID = 0xBA
	IDCluster         ID = 0x1F43B675
	IDTimecode        ID = 0xE7
	IDSimpleBlock     ID = 0xA3
	IDBlockGroup      ID = 0xA0
	IDBlock           ID = 0xA1
	IDBlockDuration   ID = 0x9B
	IDReferenceBlock  ID = 0xFB
	IDCues            ID = 0x1C53BB6B
	IDChapters        ID = 0x1043A770
	IDAttachments     ID = 0x1941A469
	IDTags            ID = 0x1254C367
	IDTag             ID = 0x7373
	IDTargets         ID = 0x63C0
	IDSimpleTag       ID = 0x67C8
	IDTagName         ID = 0x45A3
	IDTagString       ID = 0x4487
	IDVoid            ID = 0xEC
	IDCRC32           ID = 0xBF
)

// UnknownSize is the Size of an element whose size field is all ones (it ends where an
// element that cannot be its child begins).
const UnknownSize = -1

// FormatError reports a stream that is not valid Matroska.
type FormatError struct {
	Offset int64 // bytes into the stream
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("invalid MKV at byte %d: %s", e.Offset, e.Msg)
}

// IsFormatError reports whether err is (or wraps) a FormatError or a stream cut inside an
// element (io.ErrUnexpectedEOF).
func IsFormatError(err error) bool {
	var fe *FormatError
	return errors.As(err, &fe) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Header is an element header as read.
type Header struct {
	ID     ID
	Size   int64 // UnknownSize or the body's length
	Offset int64 // of the header's first byte
	Len    int   // bytes of ID and size
}

// elementReader reads element headers and bodies, counting bytes.
type elementReader struct {
	r   *bufio.Reader
	off int64
	// peeked is a header read but not yet consumed by the caller.
	peeked *Header
}

func newElementReader(r io.Reader) *elementReader {
	return &elementReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// readHeader reads the next element header. io.EOF means the stream ended cleanly between
// elements.
func (er *elementReader) readHeader() (Header, error) {
	if er.peeked != nil {
		h := *er.peeked
		er.peeked = nil
		return h, nil
	}
	start := er.off
	first, err := er.r.ReadByte()
	if err != nil {
		return Header{}, err // io.EOF between elements
	}
	er.off++
	idLen := vintLen(first)
	if idLen == 0 || idLen > 4 {
		return Header{}, &FormatError{Offset: start, Msg: fmt.Sprintf("byte 0x%02x does not start an element ID", first)}
	}
	id := uint32(first)
	for i := 1; i < idLen; i++ {
		b, err := er.byte()
		if err != nil {
			return Header{}, err
		}
		id = id<<8 | uint32(b)
	}
	sb, err := er.byte()
	if err != nil {
		return Header{}, err
	}
	sizeLen := vintLen(sb)
	if sizeLen == 0 {
		return Header{}, &FormatError{Offset: er.off - 1, Msg: fmt.Sprintf("byte 0x%02x does not start an element size", sb)}
	}
	mask := byte(0xFF >> sizeLen)
	size := uint64(sb & mask)
	allOnes := sb&mask == mask
	for i := 1; i < sizeLen; i++ {
		b, err := er.byte()
		if err != nil {
			return Header{}, err
		}
		size = size<<8 | uint64(b)
		allOnes = allOnes && b == 0xFF
	}
	h := Header{ID: ID(id), Offset: start, Len: int(er.off - start), Size: int64(size)}
	if allOnes {
		h.Size = UnknownSize
	} else if size > math.MaxInt64/2 {
		return Header{}, &FormatError{Offset: start, Msg: fmt.Sprintf("element 0x%X claims %d bytes", id, size)}
	}
	return h, nil
}

// unread puts a header back: the next readHeader returns it again.
func (er *elementReader) unread(h Header) { er.peeked = &h }

// byte reads one byte inside an element: EOF here is a cut stream.
func (er *elementReader) byte() (byte, error) {
	b, err := er.r.ReadByte()
	if err == io.EOF {
		return 0, io.ErrUnexpectedEOF
	}
	if err == nil {
		er.off++
	}
	return b, err
}

// body reads the body of h (a known size, at most max bytes).
func (er *elementReader) body(h Header, max int64) ([]byte, error) {
	if h.Size == UnknownSize {
		return nil, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X of unknown size where a size is needed", uint32(h.ID))}
	}
	if h.Size > max {
		return nil, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X of %d bytes is larger than the %d allowed", uint32(h.ID), h.Size, max)}
	}
	buf, err := readAppend(er.r, nil, h.Size)
	er.off += int64(len(buf))
	return buf, err
}

// firstRead is the most memory an element's announced size reserves before its bytes
// arrive; the buffer then grows with the data, so a hostile size costs nothing until it is sent.
const firstRead = 1 << 20

// readAppend appends n bytes from r to b, growing b as they arrive. A stream that ends
// first gives io.ErrUnexpectedEOF.
func readAppend(r io.Reader, b []byte, n int64) ([]byte, error) {
	if free := int64(cap(b) - len(b)); free < min(n, firstRead) {
		b = append(make([]byte, 0, int64(len(b))+min(n, firstRead)), b...)
	}
	for n > 0 {
		if len(b) == cap(b) {
			b = append(b[:cap(b)], make([]byte, min(n, int64(cap(b))))...)[:len(b)]
		}
		chunk := min(n, int64(cap(b)-len(b)))
		m, err := io.ReadFull(r, b[len(b):len(b)+int(chunk)])
		b = b[:len(b)+m]
		n -= int64(m)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return b, err
		}
	}
	return b, nil
}

// element reads the body of h (a known size, at most max bytes) into one buffer with a
// re-encoded header: raw is the whole element, body its tail.
func (er *elementReader) element(h Header, max int64) (raw, body []byte, err error) {
	if h.Size == UnknownSize {
		return nil, nil, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X of unknown size where a size is needed", uint32(h.ID))}
	}
	if h.Size > max {
		return nil, nil, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X of %d bytes is larger than the %d allowed", uint32(h.ID), h.Size, max)}
	}
	raw = AppendHeader(make([]byte, 0, min(h.Size, firstRead)+12), h.ID, h.Size)
	hl := len(raw)
	raw, err = readAppend(er.r, raw, h.Size)
	er.off += int64(len(raw) - hl)
	return raw, raw[hl:], err
}

// skip discards the body of h.
func (er *elementReader) skip(h Header) error {
	if h.Size == UnknownSize {
		return &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X of unknown size cannot be skipped", uint32(h.ID))}
	}
	n, err := io.CopyN(io.Discard, er.r, h.Size)
	er.off += n
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// vintLen is the length of a variable-size integer from its first byte (0 when invalid).
func vintLen(b byte) int {
	for i := 0; i < 8; i++ {
		if b&(0x80>>i) != 0 {
			return i + 1
		}
	}
	return 0
}

// Children splits a known-size element body into its child elements.
func Children(body []byte) ([]Child, error) {
	var out []Child
	er := newElementReader(bytes.NewReader(body))
	for {
		h, err := er.readHeader()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := er.body(h, int64(len(body)))
		if err != nil {
			return nil, err
		}
		out = append(out, Child{ID: h.ID, Body: b})
	}
}

// Child is one element of a parsed body.
type Child struct {
	ID   ID
	Body []byte
}

// Uint decodes an unsigned integer body (0 to 8 bytes).
func Uint(b []byte) (uint64, error) {
	if len(b) > 8 {
		return 0, fmt.Errorf("unsigned integer of %d bytes", len(b))
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// Float decodes a float body (0, 4 or 8 bytes).
func Float(b []byte) (float64, error) {
	switch len(b) {
	case 0:
		return 0, nil
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("float of %d bytes", len(b))
}
