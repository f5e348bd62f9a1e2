package mkv

import (
	"fmt"
	"io"
)

// Limits bound what a Demuxer holds in memory at once.
type Limits struct {
	// MaxMetaElement bounds the EBML header, Info, Tracks and Tags (default 1 MiB).
	MaxMetaElement int64
	// MaxBlock bounds one SimpleBlock or BlockGroup (default 64 MiB).
	MaxBlock int64
}

// EventKind says what a Demuxer event carries.
type EventKind int

// Events, in the order a well-formed stream produces them.
const (
	EventEBMLHeader   EventKind = iota + 1 // Raw is the whole EBML header element
	EventSegment                           // a Segment began
	EventInfo                              // Raw; TimecodeScale
	EventTracks                            // Raw; Tracks
	EventClusterStart                      // Timecode; Raw is the Cluster's Timecode element
	EventBlock                             // Block; Raw is the SimpleBlock or BlockGroup element
	EventClusterEnd                        // the Cluster ended (next element, end of stream)
	EventTags                              // Raw; Tags
	// EventOrphanBlock is a block before the first Cluster of a resumed stream (Resume): the
	// rest of a Cluster that began on the stream before. Block and Raw as for EventBlock.
	EventOrphanBlock
)

func (k EventKind) String() string {
	switch k {
	case EventEBMLHeader:
		return "EBML header"
	case EventSegment:
		return "Segment"
	case EventInfo:
		return "Info"
	case EventTracks:
		return "Tracks"
	case EventClusterStart:
		return "Cluster start"
	case EventBlock:
		return "Block"
	case EventClusterEnd:
		return "Cluster end"
	case EventTags:
		return "Tags"
	case EventOrphanBlock:
		return "orphan Block"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one step of a stream.
type Event struct {
	Kind   EventKind
	Offset int64  // of the element in the stream
	Raw    []byte // the element, header included (re-encoded with a minimal size field)

	DocType       string      // EventEBMLHeader
	TimecodeScale uint64      // EventInfo: nanoseconds per timecode unit
	Tracks        []Track     // EventTracks
	Timecode      int64       // EventClusterStart: the Cluster's timecode
	Block         Block       // EventBlock
	Tags          []SimpleTag // EventTags
}

// Track is a TrackEntry.
type Track struct {
	Number, UID, Type       uint64
	CodecID                 string
	CodecPrivate            []byte
	PixelWidth, PixelHeight uint64
}

// Block is a SimpleBlock or a BlockGroup's Block.
type Block struct {
	Track    uint64
	Timecode int16 // relative to the Cluster's
	Keyframe bool
	// Duration is a BlockGroup's BlockDuration (0 when absent).
	Duration uint64
	// Payload is the frame data after the block header (laced frames left as they are).
	Payload []byte
}

// SimpleTag is a tag name and its string value.
type SimpleTag struct{ Name, Value string }

type demuxState int

const (
	stateTop demuxState = iota
	stateSegment
	stateCluster
)

// Demuxer turns a Matroska stream into events as it arrives.
type Demuxer struct {
	er     *elementReader
	lim    Limits
	state  demuxState
	header bool  // an EBML header was read
	tracks bool  // Tracks were read in this Segment
	segEnd int64 // end offset of a known-size Segment, or -1
	cluEnd int64 // end offset of a known-size Cluster, or -1
	// endCluster makes the next Next report EventClusterEnd.
	endCluster bool
	err        error
	// resumed: the stream continues one whose header came before (Resume) and no EBML
	// header has come yet; orphans counts the blocks skipped before its first Cluster.
	resumed bool
	orphans int
}

// Resume makes the demuxer read a stream that continues another one: it starts inside a
// Segment whose header, Info and Tracks were sent before (a producer reconnecting in the
// middle of a fragment). Blocks before the first Cluster come as EventOrphanBlock (Orphans
// counts them); only elements a producer sends are accepted until a Cluster or an EBML
// header comes.
func (d *Demuxer) Resume() {
	d.state, d.header, d.tracks, d.resumed = stateSegment, true, true, true
}

// Orphans is how many blocks were skipped because their Cluster began before the stream.
func (d *Demuxer) Orphans() int { return d.orphans }

// NewDemuxer reads r. Zero limits take the defaults.
func NewDemuxer(r io.Reader, lim Limits) *Demuxer {
	if lim.MaxMetaElement <= 0 {
		lim.MaxMetaElement = 1 << 20
	}
	if lim.MaxBlock <= 0 {
		lim.MaxBlock = 64 << 20
	}
	return &Demuxer{er: newElementReader(r), lim: lim, segEnd: -1, cluEnd: -1}
}

// Offset is how many bytes have been read.
func (d *Demuxer) Offset() int64 { return d.er.off }

// Next returns the next event; io.EOF when the stream ended cleanly (between elements, an
// open Cluster closed first); a *FormatError or io.ErrUnexpectedEOF for a bad or cut
// stream. After an error Next returns the same error.
func (d *Demuxer) Next() (Event, error) {
	if d.err != nil {
		return Event{}, d.err
	}
	ev, err := d.next()
	if err != nil {
		d.err = err
	}
	return ev, err
}

func (d *Demuxer) next() (Event, error) {
	for {
		if d.endCluster {
			d.endCluster = false
			d.state, d.cluEnd = stateSegment, -1
			return Event{Kind: EventClusterEnd, Offset: d.er.off}, nil
		}
		switch d.state {
		case stateTop:
			ev, ok, err := d.top()
			if err != nil || ok {
				return ev, err
			}
		case stateSegment:
			ev, ok, err := d.segment()
			if err != nil || ok {
				return ev, err
			}
		case stateCluster:
			ev, ok, err := d.cluster()
			if err != nil || ok {
				return ev, err
			}
		}
	}
}

func (d *Demuxer) top() (Event, bool, error) {
	h, err := d.er.readHeader()
	if err != nil {
		return Event{}, false, err
	}
	switch h.ID {
	case IDEBML:
		body, err := d.er.body(h, d.lim.MaxMetaElement)
		if err != nil {
			return Event{}, false, err
		}
		doc, err := docType(body)
		if err != nil {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "EBML header: " + err.Error()}
		}
		d.header = true
		return Event{Kind: EventEBMLHeader, Offset: h.Offset, Raw: Element(h.ID, body), DocType: doc}, true, nil
	case IDSegment:
		if !d.header {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "Segment before the EBML header"}
		}
		d.state, d.tracks, d.segEnd = stateSegment, false, -1
		if h.Size != UnknownSize {
			d.segEnd = d.er.off + h.Size
		}
		return Event{Kind: EventSegment, Offset: h.Offset}, true, nil
	case IDVoid, IDCRC32:
		return Event{}, false, d.er.skip(h)
	}
	return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X where an EBML header or a Segment must be", uint32(h.ID))}
}

func (d *Demuxer) segment() (Event, bool, error) {
	if d.segEnd >= 0 && d.er.off >= d.segEnd {
		d.state = stateTop
		return Event{}, false, nil
	}
	h, err := d.er.readHeader()
	if err == io.EOF && d.segEnd >= 0 {
		return Event{}, false, io.ErrUnexpectedEOF
	}
	if err != nil {
		return Event{}, false, err
	}
	if h.Size != UnknownSize && d.segEnd >= 0 && d.er.off+h.Size > d.segEnd {
		return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X runs past the end of its Segment", uint32(h.ID))}
	}
	switch h.ID {
	case IDEBML, IDSegment:
		if d.segEnd >= 0 {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "a new EBML header or Segment inside a Segment"}
		}
		d.resumed = false
		d.er.unread(h)
		d.state = stateTop
		return Event{}, false, nil
	case IDInfo:
		body, err := d.er.body(h, d.lim.MaxMetaElement)
		if err != nil {
			return Event{}, false, err
		}
		scale, err := timecodeScale(body)
		if err != nil {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "Info: " + err.Error()}
		}
		return Event{Kind: EventInfo, Offset: h.Offset, Raw: Element(h.ID, body), TimecodeScale: scale}, true, nil
	case IDTracks:
		body, err := d.er.body(h, d.lim.MaxMetaElement)
		if err != nil {
			return Event{}, false, err
		}
		tracks, err := parseTracks(body)
		if err != nil {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "Tracks: " + err.Error()}
		}
		d.tracks = true
		return Event{Kind: EventTracks, Offset: h.Offset, Raw: Element(h.ID, body), Tracks: tracks}, true, nil
	case IDTags:
		body, err := d.er.body(h, d.lim.MaxMetaElement)
		if err != nil {
			return Event{}, false, err
		}
		tags, err := parseTags(body)
		if err != nil {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "Tags: " + err.Error()}
		}
		return Event{Kind: EventTags, Offset: h.Offset, Raw: Element(h.ID, body), Tags: tags}, true, nil
	case IDCluster:
		if !d.tracks {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "Cluster before Tracks"}
		}
		d.cluEnd, d.resumed = -1, false
		if h.Size != UnknownSize {
			d.cluEnd = d.er.off + h.Size
		}
		return d.clusterTimecode(h)
	}
	if h.Size == UnknownSize {
		return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X of unknown size in a Segment", uint32(h.ID))}
	}
	if d.resumed {
		switch h.ID {
		case IDSimpleBlock, IDBlockGroup:
			d.orphans++
			return d.block(h, EventOrphanBlock)
		case IDVoid, IDCRC32, IDSeekHead, IDCues:
		default:
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X where a continued stream has blocks, Tags, a Cluster or an EBML header", uint32(h.ID))}
		}
	}
	return Event{}, false, d.er.skip(h) // SeekHead, Cues, Chapters, Attachments, Void, CRC-32, …
}

// clusterTimecode reads a Cluster's first children up to its Timecode.
func (d *Demuxer) clusterTimecode(cluster Header) (Event, bool, error) {
	for {
		if d.cluEnd >= 0 && d.er.off >= d.cluEnd {
			return Event{}, false, &FormatError{Offset: cluster.Offset, Msg: "Cluster without a Timecode"}
		}
		h, err := d.er.readHeader()
		if err == io.EOF {
			return Event{}, false, io.ErrUnexpectedEOF
		}
		if err != nil {
			return Event{}, false, err
		}
		switch h.ID {
		case IDTimecode:
			body, err := d.er.body(h, 8)
			if err != nil {
				return Event{}, false, err
			}
			tc, _ := Uint(body)
			if tc > 1<<62 {
				return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("Cluster Timecode %d is out of range", tc)}
			}
			d.state = stateCluster
			return Event{Kind: EventClusterStart, Offset: cluster.Offset, Raw: Element(h.ID, body), Timecode: int64(tc)}, true, nil
		case IDSimpleBlock, IDBlockGroup:
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "a block before the Cluster's Timecode"}
		}
		if h.Size == UnknownSize || isLevel1(h.ID) {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X before the Cluster's Timecode", uint32(h.ID))}
		}
		if err := d.er.skip(h); err != nil {
			return Event{}, false, err
		}
	}
}

func (d *Demuxer) cluster() (Event, bool, error) {
	if d.cluEnd >= 0 && d.er.off >= d.cluEnd {
		d.endCluster = true
		return Event{}, false, nil
	}
	h, err := d.er.readHeader()
	if err == io.EOF {
		if d.cluEnd >= 0 || d.segEnd >= 0 {
			return Event{}, false, io.ErrUnexpectedEOF
		}
		d.endCluster = true
		return Event{}, false, nil
	}
	if err != nil {
		return Event{}, false, err
	}
	if isLevel1(h.ID) || h.ID == IDEBML || h.ID == IDSegment {
		if d.cluEnd >= 0 {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X inside a Cluster", uint32(h.ID))}
		}
		d.er.unread(h)
		d.endCluster = true
		return Event{}, false, nil
	}
	if h.Size == UnknownSize {
		return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X of unknown size in a Cluster", uint32(h.ID))}
	}
	if d.cluEnd >= 0 && d.er.off+h.Size > d.cluEnd {
		return Event{}, false, &FormatError{Offset: h.Offset, Msg: fmt.Sprintf("element 0x%X runs past the end of its Cluster", uint32(h.ID))}
	}
	switch h.ID {
	case IDSimpleBlock, IDBlockGroup:
		return d.block(h, EventBlock)
	case IDTimecode:
		return Event{}, false, &FormatError{Offset: h.Offset, Msg: "a second Timecode in a Cluster"}
	}
	return Event{}, false, d.er.skip(h) // Position, PrevSize, Void, CRC-32, SilentTracks…
}

// block reads a SimpleBlock or a BlockGroup.
func (d *Demuxer) block(h Header, kind EventKind) (Event, bool, error) {
	raw, body, err := d.er.element(h, d.lim.MaxBlock)
	if err != nil {
		return Event{}, false, err
	}
	if h.ID == IDBlockGroup {
		b, err := parseBlockGroup(body)
		if err != nil {
			return Event{}, false, &FormatError{Offset: h.Offset, Msg: "BlockGroup: " + err.Error()}
		}
		return Event{Kind: kind, Offset: h.Offset, Raw: raw, Block: b}, true, nil
	}
	b, err := parseBlock(body)
	if err != nil {
		return Event{}, false, &FormatError{Offset: h.Offset, Msg: "SimpleBlock: " + err.Error()}
	}
	b.Keyframe = body[len(body)-len(b.Payload)-1]&0x80 != 0
	return Event{Kind: kind, Offset: h.Offset, Raw: raw, Block: b}, true, nil
}

func isLevel1(id ID) bool {
	switch id {
	case IDCluster, IDTags, IDInfo, IDTracks, IDCues, IDSeekHead, IDChapters, IDAttachments:
		return true
	}
	return false
}

func docType(body []byte) (string, error) {
	children, err := Children(body)
	if err != nil {
		return "", err
	}
	doc := "matroska"
	for _, c := range children {
		if c.ID == IDDocType {
			doc = trimString(c.Body)
		}
	}
	if doc != "matroska" && doc != "webm" {
		return "", fmt.Errorf("DocType %q is not matroska", doc)
	}
	return doc, nil
}

func timecodeScale(body []byte) (uint64, error) {
	children, err := Children(body)
	if err != nil {
		return 0, err
	}
	scale := uint64(1000000)
	for _, c := range children {
		if c.ID == IDTimecodeScale {
			if scale, err = Uint(c.Body); err != nil {
				return 0, err
			}
			if scale == 0 {
				return 0, fmt.Errorf("TimecodeScale 0")
			}
		}
	}
	return scale, nil
}

func parseTracks(body []byte) ([]Track, error) {
	children, err := Children(body)
	if err != nil {
		return nil, err
	}
	var out []Track
	for _, c := range children {
		if c.ID != IDTrackEntry {
			continue
		}
		fields, err := Children(c.Body)
		if err != nil {
			return nil, err
		}
		var t Track
		for _, f := range fields {
			switch f.ID {
			case IDTrackNumber:
				t.Number, err = Uint(f.Body)
			case IDTrackUID:
				t.UID, err = Uint(f.Body)
			case IDTrackType:
				t.Type, err = Uint(f.Body)
			case IDCodecID:
				t.CodecID = trimString(f.Body)
			case IDCodecPrivate:
				t.CodecPrivate = f.Body
			case IDVideo:
				var video []Child
				if video, err = Children(f.Body); err == nil {
					for _, v := range video {
						switch v.ID {
						case IDPixelWidth:
							t.PixelWidth, err = Uint(v.Body)
						case IDPixelHeight:
							t.PixelHeight, err = Uint(v.Body)
						}
					}
				}
			}
			if err != nil {
				return nil, err
			}
		}
		if t.Number == 0 {
			return nil, fmt.Errorf("TrackEntry without a TrackNumber")
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no TrackEntry")
	}
	return out, nil
}

func parseTags(body []byte) ([]SimpleTag, error) {
	tags, err := Children(body)
	if err != nil {
		return nil, err
	}
	var out []SimpleTag
	for _, tag := range tags {
		if tag.ID != IDTag {
			continue
		}
		items, err := Children(tag.Body)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if it.ID != IDSimpleTag {
				continue
			}
			fields, err := Children(it.Body)
			if err != nil {
				return nil, err
			}
			var st SimpleTag
			for _, f := range fields {
				switch f.ID {
				case IDTagName:
					st.Name = trimString(f.Body)
				case IDTagString:
					st.Value = trimString(f.Body)
				}
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// parseBlock reads a (Simple)Block body: track number, relative timecode, flags.
func parseBlock(body []byte) (Block, error) {
	if len(body) == 0 {
		return Block{}, fmt.Errorf("empty")
	}
	n := vintLen(body[0])
	if n == 0 || n > 8 || len(body) < n+3 {
		return Block{}, fmt.Errorf("%d bytes is too short for a block header", len(body))
	}
	track := uint64(body[0] & (0xFF >> n))
	for _, b := range body[1:n] {
		track = track<<8 | uint64(b)
	}
	tc := int16(uint16(body[n])<<8 | uint16(body[n+1]))
	return Block{Track: track, Timecode: tc, Payload: body[n+3:]}, nil
}

func parseBlockGroup(body []byte) (Block, error) {
	children, err := Children(body)
	if err != nil {
		return Block{}, err
	}
	var (
		b     Block
		found bool
		ref   bool
	)
	for _, c := range children {
		switch c.ID {
		case IDBlock:
			if b, err = parseBlock(c.Body); err != nil {
				return Block{}, err
			}
			found = true
		case IDReferenceBlock:
			ref = true
		}
	}
	if !found {
		return Block{}, fmt.Errorf("no Block")
	}
	b.Keyframe = !ref
	for _, c := range children {
		if c.ID == IDBlockDuration {
			b.Duration, _ = Uint(c.Body)
		}
	}
	return b, nil
}

func trimString(b []byte) string {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}
