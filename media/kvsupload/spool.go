package kvsupload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
	"go.uber.org/zap"
)

// Spool record layout (little endian). A record is written with one write call; the CRC
// covers everything after itself, so a torn or corrupt record is found on open.
//
//	0  magic "KVF1"
//	4  payload length (u32)
//	8  CRC-32C of bytes 12 … end (u32)
//	12 sequence number (u64)
//	20 cluster timecode, epoch ms (i64)
//	28 capture wall time, Unix ns (i64)
//	36 frames (u32)
//	40 duration ms (u32)
//	44 header length (u32)
//	48 payload: track header, then cluster
const (
	recMagic     = "KVF1"
	recHeaderLen = 48
	segPrefix    = "spool-"
	segSuffix    = ".kvf"
	ackedFile    = "acked"
	// maxRecord bounds a record read back (KVS refuses fragments over 50 MB).
	maxRecord = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrEvicted is returned by Read for a fragment the spool no longer holds.
var ErrEvicted = errors.New("kvsupload: fragment no longer in the spool (evicted or done)")

// SpoolOptions configure a Spool.
type SpoolOptions struct {
	// Dir holds the segment files and the acknowledgement pointer; it is created (0700).
	Dir string
	// MaxBytes bounds the spool on disk; the oldest fragments are evicted first. Zero: 512 MB.
	MaxBytes int64
	// MaxAge evicts fragments captured longer ago than this; zero keeps them until MaxBytes.
	MaxAge time.Duration
	// SegmentBytes is the size at which a segment file is rotated; files are deleted whole
	// once every fragment in them is done. Zero: 16 MB (at most MaxBytes/8).
	SegmentBytes int64
	// SyncEvery is the longest time an appended fragment may stay without fsync; zero fsyncs
	// every fragment (one per GOP, never one per frame).
	SyncEvery time.Duration
	Log       *zap.Logger
	// Now returns the wall clock; nil means time.Now.
	Now func() time.Time
}

// SpoolStats is a snapshot of the spool.
type SpoolStats struct {
	Bytes            int64     // bytes on disk, segment files
	Fragments        int       // fragments waiting for PERSISTED
	PendingBytes     int64     // their cluster bytes
	Oldest           time.Time // capture time of the oldest waiting fragment (zero when none)
	Appended         uint64    // fragments appended since open
	Done             uint64    // fragments removed on PERSISTED (or skipped)
	DroppedFragments uint64    // fragments evicted before upload (MaxBytes or MaxAge)
	DroppedBytes     int64     // their cluster bytes
	Recovered        int       // fragments found on open
	TruncatedBytes   int64     // torn or corrupt bytes cut off on open
	WrittenBytes     int64     // bytes written to segment files since open
	Syncs            uint64    // fsyncs of segment files since open
}

// FragmentInfo describes a spooled fragment without its data.
type FragmentInfo struct {
	Seq      uint64
	Timecode int64
	Wall     time.Time
	Frames   int
	Duration time.Duration
	Size     int // cluster bytes
}

type segment struct {
	first uint64
	path  string
	f     *os.File // open for reading (and appending when active)
	size  int64
	live  int // entries not yet done
}

type entry struct {
	FragmentInfo
	seg  *segment
	off  int64
	n    int // record length
	done bool
}

// Spool is a crash-safe on-disk log of fragments waiting for upload. Append writes a fragment
// before it is sent; Done removes it once KVS acknowledged it as PERSISTED. A power cut at any
// instant leaves every completely written fragment readable, none twice: on open a torn last
// record is detected by its length and CRC and cut off, and the acknowledgement pointer (the
// highest sequence number up to which everything is done, replaced atomically) skips what was
// already uploaded. Safe for concurrent use.
type Spool struct {
	opts SpoolOptions
	log  *zap.Logger

	mu       sync.Mutex
	segs     []*segment // oldest first
	active   *segment   // appended to; nil until the first Append of this run
	entries  []*entry   // waiting fragments by sequence; done ones leave from the front
	bySeq    map[uint64]*entry
	acked    uint64 // persisted pointer
	nextSeq  uint64
	bytes    int64
	lastSync time.Time
	unsynced bool
	buf      []byte
	stats    SpoolStats
	notify   chan struct{}
	closed   bool
}

// OpenSpool opens (or creates) the spool in opts.Dir, recovering what a crash left.
func OpenSpool(opts SpoolOptions) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("kvsupload: spool directory not set")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 512 << 20
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 16 << 20
	}
	opts.SegmentBytes = max(min(opts.SegmentBytes, opts.MaxBytes/8), 64<<10)
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("kvsupload: spool directory: %w", err)
	}
	s := &Spool{opts: opts, log: opts.Log, bySeq: map[uint64]*entry{}, notify: make(chan struct{}, 1)}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	return s, nil
}

func (s *Spool) recover() error {
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, ackedFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("kvsupload: spool pointer: %w", err)
	default:
		v, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			return fmt.Errorf("kvsupload: spool pointer %s holds %q: %w; delete the file to upload the whole spool again", filepath.Join(s.opts.Dir, ackedFile), b, perr)
		}
		s.acked = v
	}
	s.nextSeq = s.acked + 1
	names, err := filepath.Glob(filepath.Join(s.opts.Dir, segPrefix+"*"+segSuffix))
	if err != nil {
		return err
	}
	slices.Sort(names) // zero-padded first sequence numbers sort in order
	for _, name := range names {
		if err := s.recoverSegment(name); err != nil {
			return err
		}
	}
	s.stats.Recovered = len(s.entries)
	if len(s.entries) > 0 || s.stats.TruncatedBytes > 0 {
		s.log.Info("spool recovered", zap.String("dir", s.opts.Dir), zap.Int("fragments", len(s.entries)),
			zap.Int64("bytes", s.bytes), zap.Int64("truncated_bytes", s.stats.TruncatedBytes), zap.Uint64("acked", s.acked))
	}
	s.deleteDoneSegments()
	return nil
}

// recoverSegment indexes one segment file, cutting it at the first torn or corrupt record.
func (s *Spool) recoverSegment(name string) error {
	first, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), segPrefix), segSuffix), 10, 64)
	if err != nil {
		s.log.Warn("spool: ignoring a file that is not a segment", zap.String("file", name))
		return nil
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("kvsupload: spool segment: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("kvsupload: spool segment %s: %w", name, err)
	}
	seg := &segment{first: first, path: name, f: f}
	off := 0
	for off < len(data) {
		info, n, ok := parseRecord(data[off:])
		if !ok || info.Seq < s.nextSeq && info.Seq > s.acked {
			break // torn, corrupt, or out of order: nothing after it can be trusted
		}
		if info.Seq >= s.nextSeq {
			s.nextSeq = info.Seq + 1
		}
		if info.Seq > s.acked {
			e := &entry{FragmentInfo: info, seg: seg, off: int64(off), n: n}
			s.entries = append(s.entries, e)
			s.bySeq[info.Seq] = e
			seg.live++
		}
		off += n
	}
	if off < len(data) {
		cut := int64(len(data) - off)
		s.stats.TruncatedBytes += cut
		s.log.Warn("spool: cutting a torn or corrupt tail", zap.String("file", name), zap.Int("at", off), zap.Int64("bytes", cut))
		if err := f.Truncate(int64(off)); err != nil {
			f.Close()
			return fmt.Errorf("kvsupload: spool segment %s: truncate: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("kvsupload: spool segment %s: fsync: %w", name, err)
		}
	}
	seg.size = int64(off)
	s.bytes += seg.size
	s.segs = append(s.segs, seg)
	return nil
}

// parseRecord checks one record at the start of b; n is its length.
func parseRecord(b []byte) (info FragmentInfo, n int, ok bool) {
	if len(b) < recHeaderLen || string(b[:4]) != recMagic {
		return info, 0, false
	}
	plen := int(binary.LittleEndian.Uint32(b[4:]))
	n = recHeaderLen + plen
	if plen > maxRecord || n > len(b) {
		return info, 0, false
	}
	if crc32.Checksum(b[12:n], crcTable) != binary.LittleEndian.Uint32(b[8:]) {
		return info, 0, false
	}
	hlen := int(binary.LittleEndian.Uint32(b[44:]))
	if hlen > plen {
		return info, 0, false
	}
	info = FragmentInfo{
		Seq:      binary.LittleEndian.Uint64(b[12:]),
		Timecode: int64(binary.LittleEndian.Uint64(b[20:])),
		Wall:     time.Unix(0, int64(binary.LittleEndian.Uint64(b[28:]))),
		Frames:   int(binary.LittleEndian.Uint32(b[36:])),
		Duration: time.Duration(binary.LittleEndian.Uint32(b[40:])) * time.Millisecond,
		Size:     plen - hlen,
	}
	return info, n, true
}

// appendRecord encodes a fragment as one record.
func appendRecord(b []byte, seq uint64, fr *Fragment) []byte {
	start := len(b)
	b = append(b, recMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(fr.Header)+len(fr.Cluster)))
	b = binary.LittleEndian.AppendUint32(b, 0) // CRC, below
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(fr.Timecode))
	b = binary.LittleEndian.AppendUint64(b, uint64(fr.Wall.UnixNano()))
	b = binary.LittleEndian.AppendUint32(b, uint32(fr.Frames))
	b = binary.LittleEndian.AppendUint32(b, uint32(fr.Duration.Milliseconds()))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(fr.Header)))
	b = append(b, fr.Header...)
	b = append(b, fr.Cluster...)
	binary.LittleEndian.PutUint32(b[start+8:], crc32.Checksum(b[start+12:], crcTable))
	return b
}

// Append writes a fragment to the spool (one write call; fsync per SyncEvery), evicting the
// oldest fragments first when it would exceed MaxBytes. It sets fr.Seq.
func (s *Spool) Append(fr *Fragment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("kvsupload: spool closed")
	}
	recLen := int64(recHeaderLen + len(fr.Header) + len(fr.Cluster))
	if recLen > s.opts.MaxBytes {
		return fmt.Errorf("kvsupload: a fragment of %d bytes is larger than the whole spool (%d bytes): raise the spool's max_bytes", recLen, s.opts.MaxBytes)
	}
	s.evictAgeLocked()
	for s.bytes+recLen > s.opts.MaxBytes && len(s.segs) > 0 {
		if err := s.evictOldestLocked(); err != nil {
			return err
		}
	}
	active := s.activeLocked()
	if active == nil || active.size+recLen > s.opts.SegmentBytes && active.size > 0 {
		var err error
		if active, err = s.rotateLocked(); err != nil {
			return err
		}
	}
	fr.Seq = s.nextSeq
	s.buf = appendRecord(s.buf[:0], fr.Seq, fr)
	if _, err := active.f.WriteAt(s.buf, active.size); err != nil {
		// Cut a partial write so that the next record starts clean.
		_ = active.f.Truncate(active.size)
		return fmt.Errorf("kvsupload: spool write: %w", err)
	}
	s.stats.WrittenBytes += int64(len(s.buf))
	now := s.opts.Now()
	s.unsynced = true
	if s.opts.SyncEvery <= 0 || now.Sub(s.lastSync) >= s.opts.SyncEvery {
		if err := s.syncLocked(); err != nil {
			return err
		}
	}
	e := &entry{FragmentInfo: FragmentInfo{Seq: fr.Seq, Timecode: fr.Timecode, Wall: fr.Wall, Frames: fr.Frames,
		Duration: fr.Duration.Truncate(time.Millisecond), Size: len(fr.Cluster)}, seg: active, off: active.size, n: len(s.buf)}
	if cap(s.buf) > 4*(len(fr.Header)+len(fr.Cluster)+recHeaderLen) && cap(s.buf) > 1<<20 {
		s.buf = nil // one odd large fragment should not pin its buffer for ever
	}
	active.size += recLen
	active.live++
	s.bytes += recLen
	s.nextSeq++
	s.entries = append(s.entries, e)
	s.bySeq[e.Seq] = e
	s.stats.Appended++
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// Sync fsyncs the active segment if something was written since the last fsync.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncLocked()
}

func (s *Spool) syncLocked() error {
	active := s.activeLocked()
	if !s.unsynced || active == nil {
		return nil
	}
	if err := active.f.Sync(); err != nil {
		return fmt.Errorf("kvsupload: spool fsync: %w", err)
	}
	s.unsynced = false
	s.lastSync = s.opts.Now()
	s.stats.Syncs++
	return nil
}

func (s *Spool) activeLocked() *segment { return s.active }

// rotateLocked starts a new segment file named after the next sequence number.
func (s *Spool) rotateLocked() (*segment, error) {
	if err := s.syncLocked(); err != nil {
		return nil, err
	}
	name := filepath.Join(s.opts.Dir, fmt.Sprintf("%s%020d%s", segPrefix, s.nextSeq, segSuffix))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kvsupload: spool segment: %w", err)
	}
	if err := atomicfile.SyncDir(s.opts.Dir); err != nil {
		f.Close()
		return nil, err
	}
	seg := &segment{first: s.nextSeq, path: name, f: f}
	s.segs = append(s.segs, seg)
	s.active = seg
	s.deleteDoneSegments()
	return seg, nil
}

// evictOldestLocked deletes the oldest segment file with whatever is still waiting in it.
func (s *Spool) evictOldestLocked() error {
	seg := s.segs[0]
	if seg == s.active {
		// The active segment alone is too big: close it so that a new one takes its place.
		if _, err := s.rotateLocked(); err != nil {
			return err
		}
		if s.segs[0] != seg {
			return nil // it held nothing waiting and was deleted already
		}
	}
	var frags uint64
	var bytes int64
	var oldest time.Time
	for _, e := range s.entries {
		if e.seg != seg || e.done {
			continue
		}
		if oldest.IsZero() {
			oldest = e.Wall
		}
		e.done = true
		seg.live--
		delete(s.bySeq, e.Seq)
		frags++
		bytes += int64(e.Size)
	}
	s.stats.DroppedFragments += frags
	s.stats.DroppedBytes += bytes
	if frags > 0 {
		s.log.Warn("spool full: dropping the oldest fragments before upload (raise recording.kvs.spool.max_bytes, or check the uplink)",
			zap.Uint64("fragments", frags), zap.Int64("bytes", bytes), zap.Time("captured_from", oldest),
			zap.Int64("max_bytes", s.opts.MaxBytes), zap.Uint64("dropped_total", s.stats.DroppedFragments))
	}
	s.popDoneLocked()
	return s.removeSegment(seg)
}

// evictAgeLocked drops waiting fragments captured before now − MaxAge.
func (s *Spool) evictAgeLocked() {
	if s.opts.MaxAge <= 0 {
		return
	}
	horizon := s.opts.Now().Add(-s.opts.MaxAge)
	var frags uint64
	var bytes int64
	for _, e := range s.entries {
		if e.done {
			continue
		}
		if !e.Wall.Before(horizon) {
			break
		}
		e.done = true
		e.seg.live--
		delete(s.bySeq, e.Seq)
		frags++
		bytes += int64(e.Size)
	}
	if frags == 0 {
		return
	}
	s.stats.DroppedFragments += frags
	s.stats.DroppedBytes += bytes
	s.log.Warn("spool: dropping fragments older than max_age before upload (raise recording.kvs.spool.max_age, or check the uplink)",
		zap.Uint64("fragments", frags), zap.Int64("bytes", bytes), zap.Duration("max_age", s.opts.MaxAge),
		zap.Uint64("dropped_total", s.stats.DroppedFragments))
	s.popDoneLocked()
	if err := s.writePointerLocked(); err != nil {
		s.log.Warn("spool pointer not written", zap.Error(err))
	}
	s.deleteDoneSegments()
}

// Done removes a fragment from the spool: KVS acknowledged it as PERSISTED, or it was
// skipped for good. The acknowledgement pointer is replaced atomically when it moves.
func (s *Spool) Done(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.bySeq[seq]
	if !ok {
		return nil // evicted meanwhile, or done twice
	}
	e.done = true
	e.seg.live--
	delete(s.bySeq, seq)
	s.stats.Done++
	s.popDoneLocked()
	if err := s.writePointerLocked(); err != nil {
		return err
	}
	s.deleteDoneSegments()
	return nil
}

// popDoneLocked drops done entries from the front of the index.
func (s *Spool) popDoneLocked() {
	i := 0
	for i < len(s.entries) && s.entries[i].done {
		s.entries[i] = nil
		i++
	}
	if i > 0 {
		s.entries = slices.Delete(s.entries, 0, i)
	}
}

// writePointerLocked records that everything before the first waiting fragment is done.
func (s *Spool) writePointerLocked() error {
	acked := s.nextSeq - 1
	if len(s.entries) > 0 {
		acked = s.entries[0].Seq - 1
	}
	if acked == s.acked {
		return nil
	}
	if err := atomicfile.Write(filepath.Join(s.opts.Dir, ackedFile), []byte(strconv.FormatUint(acked, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("kvsupload: spool pointer: %w", err)
	}
	s.acked = acked
	return nil
}

// deleteDoneSegments deletes segment files (not the active one) with nothing waiting.
func (s *Spool) deleteDoneSegments() {
	for i := 0; i < len(s.segs); {
		seg := s.segs[i]
		if seg.live > 0 || seg == s.active {
			i++
			continue
		}
		if err := s.removeSegment(seg); err != nil {
			s.log.Warn("spool: segment not deleted", zap.String("file", seg.path), zap.Error(err))
			i++
		}
	}
}

func (s *Spool) removeSegment(seg *segment) error {
	i := slices.Index(s.segs, seg)
	if i < 0 {
		return nil
	}
	if seg.f != nil {
		seg.f.Close()
		seg.f = nil
	}
	if seg == s.active {
		s.active = nil
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.segs = slices.Delete(s.segs, i, i+1)
	s.bytes -= seg.size
	return nil
}

// Next returns the first waiting fragment with a sequence number above after.
func (s *Spool) Next(after uint64) (FragmentInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evictAgeLocked()
	i, _ := slices.BinarySearchFunc(s.entries, after+1, func(e *entry, seq uint64) int {
		switch {
		case e.Seq < seq:
			return -1
		case e.Seq > seq:
			return 1
		}
		return 0
	})
	for ; i < len(s.entries); i++ {
		if !s.entries[i].done {
			return s.entries[i].FragmentInfo, true
		}
	}
	return FragmentInfo{}, false
}

// Read returns a waiting fragment with its data, checked against its CRC.
func (s *Spool) Read(seq uint64) (Fragment, error) {
	s.mu.Lock()
	e, ok := s.bySeq[seq]
	var f *os.File
	if ok {
		f = e.seg.f
	}
	s.mu.Unlock()
	if !ok || f == nil {
		return Fragment{}, ErrEvicted
	}
	b := make([]byte, e.n)
	if _, err := f.ReadAt(b, e.off); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return Fragment{}, ErrEvicted
		}
		return Fragment{}, fmt.Errorf("kvsupload: spool read of fragment %d: %w", seq, err)
	}
	info, _, ok := parseRecord(b)
	if !ok || info.Seq != seq {
		return Fragment{}, fmt.Errorf("kvsupload: spool fragment %d is corrupt on disk", seq)
	}
	hlen := int(binary.LittleEndian.Uint32(b[44:]))
	payload := b[recHeaderLen:]
	return Fragment{Seq: seq, Timecode: info.Timecode, Wall: info.Wall, Frames: info.Frames, Duration: info.Duration,
		Header: payload[:hlen:hlen], Cluster: payload[hlen:]}, nil
}

// Appended is signalled (without blocking) after each Append.
func (s *Spool) Appended() <-chan struct{} { return s.notify }

// Stats returns a snapshot of the spool.
func (s *Spool) Stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Bytes = s.bytes
	for _, e := range s.entries {
		if e.done {
			continue
		}
		if st.Oldest.IsZero() {
			st.Oldest = e.Wall
		}
		st.Fragments++
		st.PendingBytes += int64(e.Size)
	}
	return st
}

// Close fsyncs and closes the spool's files. Waiting fragments stay for the next open.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.syncLocked()
	s.closed = true
	s.closeFiles()
	return err
}

func (s *Spool) closeFiles() {
	for _, seg := range s.segs {
		if seg.f != nil {
			seg.f.Close()
			seg.f = nil
		}
	}
}
