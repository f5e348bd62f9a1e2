package kvsupload

import (
	"bytes"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
)

// Fragment is one KVS fragment: one Matroska Cluster holding one GOP, starting on a keyframe.
type Fragment struct {
	// Seq numbers fragments in spool order; the spool assigns it.
	Seq uint64
	// Timecode is the Cluster's absolute timecode in epoch milliseconds; KVS acknowledges the
	// fragment with the same FragmentTimecode.
	Timecode int64
	// Wall is when the fragment's keyframe was captured (the hub's wall clock).
	Wall time.Time
	// Frames is the number of access units (SimpleBlocks) in the cluster.
	Frames int
	// Duration runs from the first frame to the end of the last one.
	Duration time.Duration
	// Header is the EBML header, Segment, Info and Tracks the cluster belongs to (Track.Header);
	// fragments of one track share the same bytes.
	Header []byte
	// Cluster is the unknown-size Cluster: Timecode, then the SimpleBlocks (AVCC NAL units).
	Cluster []byte
}

// Size is the fragment's byte count on the wire without its header.
func (f *Fragment) Size() int { return len(f.Cluster) }

// FragmenterOptions configure a Fragmenter.
type FragmenterOptions struct {
	// MaxDuration bounds a fragment (KVS refuses fragments over 10 s with ErrorId 4002). A GOP
	// that runs longer is cut: the rest of it, up to the next keyframe, is dropped and counted.
	// Zero means 10 s.
	MaxDuration time.Duration
	// Resync is how far the stream's timestamps may drift from the wall clock before the
	// absolute timecodes are anchored to the wall clock again (zero: 2 s).
	Resync time.Duration
}

// FragmenterStats counts what the fragmenter did.
type FragmenterStats struct {
	Fragments     uint64 // fragments completed
	Frames        uint64 // access units written into fragments
	Dropped       uint64 // access units dropped: before the first keyframe with SPS/PPS, or past MaxDuration
	TrackChanges  uint64 // SPS/PPS changes after the first track
	Resyncs       uint64 // times the timecodes were anchored to the wall clock again
	BadParamSets  uint64 // keyframes whose SPS did not parse
	LastTimecode  int64
	CurrentWidth  int
	CurrentHeight int
}

// Fragmenter turns the Hub's access units (Annex-B, SPS/PPS in-band on every keyframe) into
// KVS fragments: one Cluster per GOP with absolute epoch-millisecond timecodes, SimpleBlocks
// with AVCC (4-byte length) NAL units, and a new track header whenever the SPS or PPS changes.
// It is not safe for concurrent use.
type Fragmenter struct {
	opts   FragmenterOptions
	track  Track
	header []byte

	open      bool
	cluster   []byte
	frag      Fragment
	anchor    int64 // epoch ms of PTS 0
	anchored  bool
	lastTC    int64 // absolute timecode of the last block written
	lastEnd   int64 // absolute end of the last block written
	waitKey   bool
	stats     FragmenterStats
	lastClust int // size of the previous cluster, to size the next buffer
}

// NewFragmenter returns a fragmenter that waits for a keyframe with SPS and PPS.
func NewFragmenter(opts FragmenterOptions) *Fragmenter {
	if opts.MaxDuration <= 0 {
		opts.MaxDuration = 10 * time.Second
	}
	if opts.Resync <= 0 {
		opts.Resync = 2 * time.Second
	}
	return &Fragmenter{opts: opts, waitKey: true, lastClust: 64 << 10}
}

// Push adds an access unit. When the unit starts a new GOP, the previous GOP's fragment is
// complete and returned with ok true. The unit's data is copied; the caller keeps it.
func (f *Fragmenter) Push(au media.AccessUnit) (out Fragment, ok bool) {
	if au.Keyframe {
		out, ok = f.Flush()
		f.startCluster(au)
		return out, ok
	}
	if !f.open || f.waitKey {
		f.stats.Dropped++
		return Fragment{}, false
	}
	tc := f.timecode(au.PTS)
	if time.Duration(tc-f.frag.Timecode)*time.Millisecond >= f.opts.MaxDuration || tc-f.frag.Timecode > 32767 {
		// The GOP is too long for one fragment: close it, drop the rest of the GOP.
		out, ok = f.Flush()
		f.waitKey = true
		f.stats.Dropped++
		return out, ok
	}
	f.appendBlock(au, tc)
	return Fragment{}, false
}

// Flush completes the open fragment, if any (at the end of a recording).
func (f *Fragmenter) Flush() (Fragment, bool) {
	if !f.open {
		return Fragment{}, false
	}
	f.open = false
	out := f.frag
	out.Cluster = f.cluster
	out.Duration = time.Duration(f.lastEnd-out.Timecode) * time.Millisecond
	f.cluster = nil
	f.lastClust = len(out.Cluster)
	f.stats.Fragments++
	return out, true
}

// Track returns the current track (zero before the first keyframe with SPS and PPS).
func (f *Fragmenter) Track() Track { return f.track }

// Stats returns the fragmenter's counters.
func (f *Fragmenter) Stats() FragmenterStats {
	s := f.stats
	s.CurrentWidth, s.CurrentHeight = f.track.Width, f.track.Height
	return s
}

// startCluster opens a cluster on a keyframe, taking a new track when its SPS/PPS changed.
func (f *Fragmenter) startCluster(au media.AccessUnit) {
	sps, pps := h264.ParamSets(au.Data)
	if sps != nil && pps != nil && (!bytes.Equal(sps, f.track.SPS) || !bytes.Equal(pps, f.track.PPS)) {
		t, err := NewTrack(sps, pps)
		if err != nil {
			f.stats.BadParamSets++
		} else {
			if f.header != nil {
				f.stats.TrackChanges++
			}
			f.track, f.header = t, t.Header()
		}
	}
	if f.header == nil {
		f.stats.Dropped++
		f.waitKey = true
		return
	}
	f.waitKey = false
	wallMs := au.Wall.UnixMilli()
	if au.Wall.IsZero() {
		wallMs = time.Now().UnixMilli()
	}
	if !f.anchored || abs(f.anchor+ms(au.PTS)-wallMs) > f.opts.Resync.Milliseconds() {
		if f.anchored {
			f.stats.Resyncs++
		}
		f.anchor, f.anchored = wallMs-ms(au.PTS), true
	}
	tc := f.timecode(au.PTS)
	if tc <= f.lastTC && f.stats.Fragments+f.stats.Frames > 0 {
		// Timecodes must grow (KVS ErrorId 4004): shift the anchor past the last block.
		f.anchor += f.lastTC + 1 - tc
		tc = f.lastTC + 1
	}
	f.open = true
	f.cluster = make([]byte, 0, f.lastClust+f.lastClust/4+len(au.Data))
	f.cluster = appendID(f.cluster, idCluster)
	f.cluster = append(f.cluster, unknownSize...)
	f.cluster = appendUint(f.cluster, idTimecode, uint64(tc))
	f.frag = Fragment{Timecode: tc, Wall: au.Wall, Header: f.header}
	f.appendBlock(au, tc)
}

// timecode maps a stream timestamp to absolute epoch milliseconds.
func (f *Fragmenter) timecode(pts time.Duration) int64 { return f.anchor + ms(pts) }

// ms rounds to the nearest millisecond (frame durations such as 66.67 ms do not add up by truncation).
func ms(d time.Duration) int64 { return d.Round(time.Millisecond).Milliseconds() }

// appendBlock writes one SimpleBlock: track 1, int16 timecode relative to the cluster, flags
// (0x80 on keyframes), then the access unit's NAL units in AVCC form (AUDs left out).
func (f *Fragmenter) appendBlock(au media.AccessUnit, tc int64) {
	n := 0
	for nal := range h264.NALUnits(au.Data) {
		if h264.TypeOf(nal) != h264.NALAUD {
			n += 4 + len(nal)
		}
	}
	rel := tc - f.frag.Timecode
	var flags byte
	if au.Keyframe {
		flags = 0x80
	}
	b := appendID(f.cluster, idSimpleBlock)
	b = appendSize(b, 4+n)
	b = append(b, 0x81, byte(rel>>8), byte(rel), flags)
	for nal := range h264.NALUnits(au.Data) {
		if h264.TypeOf(nal) == h264.NALAUD {
			continue
		}
		l := len(nal)
		b = append(b, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
		b = append(b, nal...)
	}
	f.cluster = b
	f.frag.Frames++
	f.stats.Frames++
	f.lastTC = tc
	end := tc + max(au.Duration.Milliseconds(), 1)
	f.lastEnd = max(f.lastEnd, end)
	f.stats.LastTimecode = tc
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
