package localcloud

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
	"github.com/edgecam/edgecam/localcloud/mkv"
	"go.uber.org/zap"
)

// PutMedia (WIRE-FORMATS §6): one long chunked POST read while the acks are written on the
// same connection; the MKV parsed as it streams; per fragment (Cluster) BUFFERING, RECEIVED
// and PERSISTED acks, or an ERROR ack with AWS's ErrorId, after which the connection ends.

// PutMedia ErrorIds.
const (
	ackErrRead           = 4000
	ackErrTooBig         = 4001
	ackErrTooLong        = 4002
	ackErrTimecodeBack   = 4004
	ackErrInvalidMKV     = 4006
	ackErrProducerTime   = 4007
	ackErrStreamDeleted  = 4008
	ackErrTrackMismatch  = 4010
	ackErrInternal       = 5000
	ackErrPersistFailure = 5001
)

// putMediaLimits are AWS's limits on a fragment.
type putMediaLimits struct {
	MaxFragmentBytes    int64         // 50 MB
	MaxFragmentDuration time.Duration // 10 s
	Idle                time.Duration // IDLE ack after this long without an ack
}

func (l putMediaLimits) withDefaults() putMediaLimits {
	if l.MaxFragmentBytes <= 0 {
		l.MaxFragmentBytes = 50 << 20
	}
	if l.MaxFragmentDuration <= 0 {
		l.MaxFragmentDuration = 10 * time.Second
	}
	if l.Idle <= 0 {
		l.Idle = 3 * time.Second
	}
	return l
}

// ack is a PutMedia acknowledgement.
type ack struct {
	EventType        string `json:"EventType"`
	FragmentTimecode *int64 `json:"FragmentTimecode,omitempty"`
	FragmentNumber   string `json:"FragmentNumber,omitempty"`
	ErrorID          int    `json:"ErrorId,omitempty"`
}

// streamService is the KVS stream stand-in: control plane, PutMedia, the read side.
type streamService struct {
	k       *kvsServer
	log     *zap.Logger
	streams *streamStore
	media   *mediaStore
	limits  putMediaLimits
	stats   *streamStatsSet
	hls     hlsSessions
	motion  motionLog
	ctx     context.Context
	cancel  context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*putSession  // the newest PutMedia per stream
	headers  map[string]streamHeader // the last header each stream sent
	partials map[string]*partialFragment
}

// partialFragment is a fragment whose connection broke before it was complete: a producer
// that goes on where it was on its next connection completes it.
type partialFragment struct {
	timecodeMs, minTc, maxTc, bytes int64
	children                        [][]byte
	frames                          int
}

// continuedBy reports whether a block at tc (ms, relative to the fragment's Cluster) is the
// frame after the partial fragment's last: later, by at most one and a half frame intervals
// (a frame lost in between would break the decoding of the rest of the fragment).
func (p *partialFragment) continuedBy(tc int64) bool {
	interval := int64(200)
	if p.frames > 1 {
		interval = (p.maxTc - p.minTc) / int64(p.frames-1)
	}
	return tc > p.maxTc && tc-p.maxTc <= interval*3/2+1
}

// partialWire is a partial fragment on disk (<stream dir>/partial.json): it outlives a
// restart of localcloud, which is when producers reconnect mid-fragment.
type partialWire struct {
	TimecodeMs int64  `json:"timecodeMs"`
	MinTc      int64  `json:"minTc"`
	MaxTc      int64  `json:"maxTc"`
	Bytes      int64  `json:"bytes"`
	Frames     int    `json:"frames"`
	Children   []byte `json:"children"` // the Cluster's Timecode and blocks, as sent
}

func (s *streamService) keepPartial(name string, p *partialFragment) {
	s.mu.Lock()
	s.partials[name] = p
	s.mu.Unlock()
	data, _ := json.Marshal(partialWire{TimecodeMs: p.timecodeMs, MinTc: p.minTc, MaxTc: p.maxTc, Bytes: p.bytes, Frames: p.frames, Children: mkv.Concat(p.children...)})
	if err := os.MkdirAll(s.media.streamDir(name), 0o755); err == nil {
		err = atomicfile.Write(filepath.Join(s.media.streamDir(name), "partial.json"), data, 0o644)
		if err != nil {
			s.log.Warn("partial fragment not kept on disk", zap.String("stream", name), zap.Error(err))
		}
	}
}

// takePartial returns (and forgets) the stream's partial fragment, if any.
func (s *streamService) takePartial(name string) *partialFragment {
	s.mu.Lock()
	p := s.partials[name]
	delete(s.partials, name)
	s.mu.Unlock()
	file := filepath.Join(s.media.streamDir(name), "partial.json")
	data, err := os.ReadFile(file)
	_ = os.Remove(file)
	if p != nil || err != nil {
		return p
	}
	var w partialWire
	if json.Unmarshal(data, &w) != nil {
		return nil
	}
	children, err := mkv.Children(w.Children)
	if err != nil {
		return nil
	}
	p = &partialFragment{timecodeMs: w.TimecodeMs, minTc: w.MinTc, maxTc: w.MaxTc, bytes: w.Bytes, frames: w.Frames}
	for _, c := range children {
		p.children = append(p.children, mkv.Element(c.ID, c.Body))
	}
	return p
}

// streamHeader is what a producer sends before its first Cluster: a connection that starts
// in the middle of a fragment continues with the header of the one before it.
type streamHeader struct {
	ebml, info, tracksRaw []byte
	scale                 uint64
	tracks                map[uint64]bool
}

// lastHeader returns the header the stream sent last: remembered, or read from its newest
// stored fragment (after a restart).
func (s *streamService) lastHeader(name string) (streamHeader, bool) {
	s.mu.Lock()
	h, ok := s.headers[name]
	s.mu.Unlock()
	if ok {
		return h, true
	}
	list, _ := s.media.fragments(name)
	if len(list) == 0 {
		return streamHeader{}, false
	}
	newest := list[0]
	for _, f := range list {
		if f.Number > newest.Number {
			newest = f
		}
	}
	p, err := s.readFragment(name, newest)
	if err != nil || p.Tracks == nil {
		return streamHeader{}, false
	}
	h = streamHeader{ebml: p.EBMLHeader, info: p.Info, tracksRaw: p.Tracks, scale: p.TimecodeScale, tracks: map[uint64]bool{}}
	d := mkv.NewDemuxer(bytes.NewReader(mkv.Concat(p.EBMLHeader, mkv.AppendHeader(nil, mkv.IDSegment, mkv.UnknownSize), p.Tracks)), mkv.Limits{})
	for {
		ev, err := d.Next()
		if err != nil {
			break
		}
		for _, t := range ev.Tracks {
			h.tracks[t.Number] = true
		}
	}
	return h, len(h.tracks) > 0
}

func (s *streamService) rememberHeader(name string, h streamHeader) {
	s.mu.Lock()
	s.headers[name] = h
	s.mu.Unlock()
}

func newStreamService(k *kvsServer, log *zap.Logger, streamsFile, dataDir, region, account string, activation time.Duration, limits putMediaLimits) (*streamService, error) {
	streams, err := openStreamStore(streamsFile, region, account, activation)
	if err != nil {
		return nil, err
	}
	media, err := newMediaStore(dataDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &streamService{k: k, log: log, streams: streams, media: media, limits: limits.withDefaults(), stats: newStreamStatsSet(),
		ctx: ctx, cancel: cancel, sessions: map[string]*putSession{}, headers: map[string]streamHeader{},
		partials: map[string]*partialFragment{}}
	go s.retentionLoop(time.Minute)
	return s, nil
}

// close ends every PutMedia session and the retention loop.
func (s *streamService) close() {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		sess.end(0)
	}
}

// ackWriteTimeout bounds writing one ack: a producer that stops reading its acks loses the
// connection rather than holding the session (and a newer connection) up.
const ackWriteTimeout = 10 * time.Second

// putSession is one PutMedia connection.
type putSession struct {
	stream string
	rc     *http.ResponseController
	w      http.ResponseWriter
	stats  *streamStats
	done   chan struct{}

	// mu serialises writes; closed (set when the handler returns) stops them.
	mu      sync.Mutex
	closed  bool
	lastAck time.Time

	endMu    sync.Mutex
	ended    bool
	endError int // ErrorId to send when ended by the service (0: none)
}

// send writes one ack line and flushes it.
func (p *putSession) send(a ack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sendLocked(a)
}

func (p *putSession) sendLocked(a ack) {
	if p.closed {
		return
	}
	line, _ := json.Marshal(a)
	_ = p.rc.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
	_, _ = p.w.Write(append(line, '\n'))
	_ = p.rc.Flush()
	p.lastAck = time.Now()
	p.stats.ack(a)
}

// close stops every write: the handler is returning.
func (p *putSession) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	close(p.done)
}

// end makes the session's body reads fail at once (a newer connection, a deleted stream,
// shutdown); errorID, when not 0, is sent as the last ack. It never waits for a write.
func (p *putSession) end(errorID int) {
	p.endMu.Lock()
	defer p.endMu.Unlock()
	if p.ended {
		return
	}
	p.ended, p.endError = true, errorID
	_ = p.rc.SetReadDeadline(time.Now())
}

func (p *putSession) endedBy() (bool, int) {
	p.endMu.Lock()
	defer p.endMu.Unlock()
	return p.ended, p.endError
}

// idleLoop sends IDLE when no ack went out for a while.
func (p *putSession) idleLoop(every time.Duration) {
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			if time.Since(p.lastAck) >= every {
				p.sendLocked(ack{EventType: "IDLE"})
			}
			p.mu.Unlock()
		}
	}
}

// streamDeleted ends the stream's PutMedia with 4008 and deletes its fragments.
func (s *streamService) streamDeleted(name string) {
	s.mu.Lock()
	if sess := s.sessions[name]; sess != nil {
		sess.end(ackErrStreamDeleted)
	}
	s.mu.Unlock()
	if err := s.media.removeStream(name); err != nil {
		s.log.Warn("could not delete the stream's fragments", zap.String("stream", name), zap.Error(err))
	}
}

// countingReader counts the bytes read (what AWS bills as ingested).
type countingReader struct {
	r     io.Reader
	stats *streamStats
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.stats.ingest(n)
	return n, err
}

// putMedia serves POST /putMedia.
func (s *streamService) putMedia(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		serviceError(http.StatusMethodNotAllowed, "MethodNotAllowedException", "PutMedia takes POST").write(w)
		return
	}
	// The body streams: the producer signs it as empty (sha256 of "").
	principal, aerr := s.k.verifier.verifyHeader(r, nil)
	if aerr != nil {
		s.log.Warn("PutMedia refused: bad signature", zap.String("error_type", aerr.Type), zap.String("message", aerr.Message))
		aerr.write(w)
		return
	}
	st, aerr := s.findStream(streamRef{StreamName: r.Header.Get("x-amzn-stream-name"), StreamARN: r.Header.Get("x-amzn-stream-arn")})
	if aerr != nil {
		aerr.write(w)
		return
	}
	tcType := r.Header.Get("x-amzn-fragment-timecode-type")
	if tcType != "ABSOLUTE" && tcType != "RELATIVE" {
		serviceError(http.StatusBadRequest, "InvalidArgumentException", "x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE, not %q", tcType).write(w)
		return
	}
	var startMs int64
	if v := r.Header.Get("x-amzn-producer-start-timestamp"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			serviceError(http.StatusBadRequest, "InvalidArgumentException", "x-amzn-producer-start-timestamp %q is not <seconds>.<milliseconds>", v).write(w)
			return
		}
		startMs = int64(f*1000 + 0.5)
	} else if tcType == "RELATIVE" {
		serviceError(http.StatusBadRequest, "InvalidArgumentException", "x-amzn-producer-start-timestamp is required with RELATIVE timecodes").write(w)
		return
	}
	acks := r.Header.Get("x-amzn-fragment-acknowledgment-required") != "0"

	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		serviceError(http.StatusInternalServerError, "ClientLimitExceededException", "full duplex: %v", err).write(w)
		return
	}
	stats := s.stats.get(st.Name)
	stats.connection()
	// Reading first answers "Expect: 100-continue"; the 200 follows the first bytes.
	body := bufio.NewReaderSize(countingReader{r: r.Body, stats: stats}, 64<<10)
	if _, err := body.Peek(1); err != nil {
		s.log.Info("PutMedia ended before any data", zap.String("stream", st.Name), zap.Error(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()

	sess := &putSession{stream: st.Name, rc: rc, w: w, stats: stats, lastAck: time.Now(), done: make(chan struct{})}
	if !acks {
		sess.w = discardAcks{w}
	}
	s.mu.Lock()
	if old := s.sessions[st.Name]; old != nil {
		old.end(0) // the newest connection wins
	}
	s.sessions[st.Name] = sess
	s.mu.Unlock()
	defer func() {
		// Nothing may touch w once the handler returns: the session leaves the map (end is
		// only called from it), then stops writing (idleLoop checks it).
		s.mu.Lock()
		if s.sessions[st.Name] == sess {
			delete(s.sessions, st.Name)
		}
		s.mu.Unlock()
		sess.close()
	}()
	go sess.idleLoop(s.limits.Idle)

	log := s.log.With(zap.String("stream", st.Name), zap.String("principal", principal))
	log.Info("PutMedia connected", zap.String("timecode_type", tcType))
	in := &ingest{s: s, sess: sess, log: log, stream: st.Name, relative: tcType == "RELATIVE", startMs: startMs}
	demux := mkv.NewDemuxer(body, mkv.Limits{MaxBlock: s.limits.MaxFragmentBytes + 1})
	if first, _ := body.Peek(4); !bytes.Equal(first, []byte{0x1A, 0x45, 0xDF, 0xA3}) {
		// A producer that lost its connection mid-fragment may go on where it was (kvssink
		// does after its PutMedia failed to connect for a while): continue with the
		// stream's last header; the orphaned end of the broken fragment is skipped.
		if h, ok := s.lastHeader(st.Name); ok {
			demux.Resume()
			in.ebmlHeader, in.info, in.tracksRaw, in.scale, in.tracks = h.ebml, h.info, h.tracksRaw, h.scale, h.tracks
			log.Info("PutMedia continues the stream without a header")
		}
	}
	errorID, err := in.run(demux)
	if in.orphans > 0 {
		stats.orphans(in.orphans)
		log.Warn("PutMedia began in the middle of a fragment that cannot be completed: its blocks were skipped", zap.Int("blocks", in.orphans))
	}
	_, endErr := sess.endedBy()
	if in.inFragment && in.frames > 0 && (errorID == ackErrRead || errorID == 0 && err != nil && endErr == 0) {
		// The connection broke mid-fragment: keep what came, the producer may go on.
		in.s.keepPartial(st.Name, &partialFragment{timecodeMs: in.timecodeMs, minTc: in.minTc, maxTc: in.maxTc, bytes: in.bytes, children: in.children, frames: in.frames})
	}
	if ended, endErr := sess.endedBy(); ended {
		if endErr != 0 {
			sess.send(ack{EventType: "ERROR", FragmentTimecode: in.fragTimecode(), ErrorID: endErr})
			stats.errorID(endErr)
		}
		log.Info("PutMedia ended by the service", zap.Int("error_id", endErr))
		if s.ctx.Err() != nil {
			// localcloud is stopping: the connection breaks as it would when a service goes
			// down, rather than ending its response in good order (a producer treats the two
			// differently: it rewinds to its last unacknowledged fragment only after a break).
			panic(http.ErrAbortHandler)
		}
		return
	}
	if errorID != 0 {
		sess.send(ack{EventType: "ERROR", FragmentTimecode: in.fragTimecode(), ErrorID: errorID})
		stats.errorID(errorID)
		log.Warn("PutMedia error", zap.Int("error_id", errorID), zap.Error(err))
		return
	}
	log.Info("PutMedia ended", zap.Error(err))
}

type discardAcks struct{ http.ResponseWriter }

func (discardAcks) Write(b []byte) (int, error) { return len(b), nil }

// ingest is the state of one PutMedia body.
type ingest struct {
	s        *streamService
	sess     *putSession
	log      *zap.Logger
	stream   string
	relative bool
	startMs  int64

	ebmlHeader, info, tracksRaw []byte
	scale                       uint64
	tracks                      map[uint64]bool

	inFragment   bool
	haveTimecode bool
	timecodeMs   int64 // of the current (or last) fragment, as the producer sent it
	prevMs       int64
	havePrev     bool
	children     [][]byte
	bytes        int64
	frames       int
	minTc, maxTc int64
	// partialTaken: the stream's partial fragment was looked at; orphans counts the blocks
	// skipped because no partial fragment they continue was kept.
	partialTaken bool
	orphans      int
}

func (in *ingest) fragTimecode() *int64 {
	if !in.haveTimecode {
		return nil
	}
	v := in.timecodeMs
	return &v
}

// toMs converts timecode units to milliseconds.
func (in *ingest) toMs(v int64) int64 { return v * int64(in.scale) / 1_000_000 }

// run reads the body to its end; it returns the ErrorId to send (0: none) and why.
func (in *ingest) run(d *mkv.Demuxer) (int, error) {
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			if in.inFragment { // a completed partial fragment, not followed by a Cluster
				return in.fragmentDone()
			}
			return 0, nil
		}
		if err != nil {
			if ended, _ := in.sess.endedBy(); ended {
				return 0, err
			}
			if mkv.IsFormatError(err) {
				return ackErrInvalidMKV, err
			}
			return ackErrRead, err
		}
		if id, err := in.event(ev); id != 0 {
			return id, err
		}
	}
}

func (in *ingest) event(ev mkv.Event) (int, error) {
	switch ev.Kind {
	case mkv.EventEBMLHeader:
		in.ebmlHeader = ev.Raw
	case mkv.EventSegment:
		in.info, in.tracksRaw, in.tracks, in.scale = nil, nil, nil, 1_000_000
	case mkv.EventInfo:
		in.info, in.scale = ev.Raw, ev.TimecodeScale
	case mkv.EventTracks:
		in.tracksRaw, in.tracks = ev.Raw, map[uint64]bool{}
		for _, t := range ev.Tracks {
			in.tracks[t.Number] = true
		}
		if in.info == nil {
			in.info, in.scale = mkv.InfoElement(1_000_000, "localcloud"), 1_000_000
		}
		ebml := in.ebmlHeader
		if ebml == nil {
			ebml = mkv.EBMLHeader()
		}
		in.s.rememberHeader(in.stream, streamHeader{ebml: ebml, info: in.info, tracksRaw: in.tracksRaw, scale: in.scale, tracks: in.tracks})
	case mkv.EventOrphanBlock:
		return in.orphan(ev)
	case mkv.EventClusterStart:
		if in.inFragment { // a completed partial fragment
			if id, err := in.fragmentDone(); id != 0 {
				return id, err
			}
		}
		if !in.partialTaken {
			// The connection starts a fragment of its own: a partial one kept from a broken
			// connection will not be continued.
			in.partialTaken = true
			in.s.takePartial(in.stream)
		}
		if in.info == nil {
			in.info = mkv.InfoElement(1_000_000, "localcloud")
			in.scale = 1_000_000
		}
		ms := in.toMs(ev.Timecode)
		in.timecodeMs, in.haveTimecode = ms, true
		if in.havePrev && ms < in.prevMs {
			return ackErrTimecodeBack, fmt.Errorf("fragment timecode %d ms is before the previous fragment's %d ms", ms, in.prevMs)
		}
		in.prevMs, in.havePrev = ms, true
		in.inFragment, in.children, in.bytes, in.frames = true, [][]byte{ev.Raw}, int64(len(ev.Raw)), 0
		in.sess.send(ack{EventType: "BUFFERING", FragmentTimecode: in.fragTimecode()})
	case mkv.EventBlock:
		b := ev.Block
		if !in.tracks[b.Track] {
			return ackErrTrackMismatch, fmt.Errorf("a block of track %d, which Tracks does not declare", b.Track)
		}
		in.bytes += int64(len(ev.Raw))
		if in.bytes > in.s.limits.MaxFragmentBytes {
			return ackErrTooBig, fmt.Errorf("fragment larger than %d bytes", in.s.limits.MaxFragmentBytes)
		}
		tc := in.toMs(int64(b.Timecode))
		if in.frames == 0 || tc < in.minTc {
			in.minTc = tc
		}
		if in.frames == 0 || tc > in.maxTc {
			in.maxTc = tc
		}
		if time.Duration(in.maxTc-in.minTc)*time.Millisecond > in.s.limits.MaxFragmentDuration || time.Duration(tc)*time.Millisecond > in.s.limits.MaxFragmentDuration {
			return ackErrTooLong, fmt.Errorf("fragment longer than %s", in.s.limits.MaxFragmentDuration)
		}
		in.frames++
		in.children = append(in.children, ev.Raw)
	case mkv.EventClusterEnd:
		return in.fragmentDone()
	case mkv.EventTags:
		if in.inFragment { // a completed partial fragment
			if id, err := in.fragmentDone(); id != 0 {
				return id, err
			}
		}
		for _, t := range ev.Tags {
			if t.Name == "AWS_KINESISVIDEO_END_OF_FRAGMENT" {
				in.log.Debug("end-of-fragment tag")
			}
		}
	}
	return 0, nil
}

// orphan handles a block that continues a fragment begun on a broken connection: the
// stream's partial fragment is completed when the block follows its last one; otherwise the
// block is skipped.
func (in *ingest) orphan(ev mkv.Event) (int, error) {
	if !in.partialTaken {
		in.partialTaken = true
		if p := in.s.takePartial(in.stream); p != nil && p.continuedBy(in.toMs(int64(ev.Block.Timecode))) {
			in.inFragment, in.haveTimecode, in.timecodeMs = true, true, p.timecodeMs
			in.prevMs, in.havePrev = p.timecodeMs, true
			in.children, in.bytes, in.frames, in.minTc, in.maxTc = p.children, p.bytes, p.frames, p.minTc, p.maxTc
			in.log.Info("PutMedia completes the fragment its broken connection began", zap.Int64("fragment_timecode", p.timecodeMs))
		}
	}
	if !in.inFragment {
		in.orphans++
		return 0, nil
	}
	ev.Kind = mkv.EventBlock
	return in.event(ev)
}

// fragmentDone acknowledges a complete fragment and stores it (once).
func (in *ingest) fragmentDone() (int, error) {
	in.inFragment = false
	if in.frames == 0 {
		return ackErrInvalidMKV, errors.New("a Cluster without frames")
	}
	in.sess.send(ack{EventType: "RECEIVED", FragmentTimecode: in.fragTimecode()})
	st, ok := in.s.streams.named(in.stream)
	if !ok {
		return ackErrStreamDeleted, errors.New("stream deleted")
	}
	stats := in.sess.stats
	stats.fragment()
	if st.DataRetentionInHours == 0 {
		return 0, nil // AWS keeps nothing and sends no PERSISTED
	}
	producerMs := in.timecodeMs
	if in.relative {
		producerMs += in.startMs
	}
	dur := in.maxTc - in.minTc
	if in.frames > 1 {
		dur += dur / int64(in.frames-1)
	}
	ebml := in.ebmlHeader
	if ebml == nil {
		ebml = mkv.EBMLHeader()
	}
	fr := storedFragment{ProducerMs: producerMs, ServerMs: in.s.k.now().UnixMilli(), DurationMs: dur, Frames: in.frames, TimecodeMs: in.timecodeMs}
	stored, dup, err := in.s.media.add(in.stream, fr, fragmentMKV(ebml, in.info, in.tracksRaw, in.children))
	if errors.Is(err, errStreamMissing) {
		return ackErrStreamDeleted, errors.New("stream deleted")
	}
	if err != nil {
		return ackErrPersistFailure, err
	}
	if dup {
		stats.duplicate()
	} else {
		stats.persisted(stored.Size)
	}
	in.sess.send(ack{EventType: "PERSISTED", FragmentTimecode: in.fragTimecode(), FragmentNumber: stored.Number})
	return 0, nil
}

// retentionLoop deletes fragments older than their stream's retention.
func (s *streamService) retentionLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.media.sweep:
		}
		s.expireAll()
	}
}

func (s *streamService) expireAll() {
	now := s.k.now()
	for _, st := range s.streams.list() {
		cutoff := now.Add(-time.Duration(st.DataRetentionInHours) * time.Hour)
		n, err := s.media.expire(st.Name, cutoff)
		if err != nil {
			s.log.Warn("retention: could not delete fragments", zap.String("stream", st.Name), zap.Error(err))
		}
		if n > 0 {
			s.log.Info("retention: fragments deleted", zap.String("stream", st.Name), zap.Int("fragments", n), zap.Int("retention_hours", st.DataRetentionInHours))
		}
	}
}

// kvsPathStream splits /kvs/streams/<name>/<what>.
func kvsPathStream(path string) (name, what string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/kvs/streams/")
	if !ok {
		return "", "", false
	}
	name, what, _ = strings.Cut(rest, "/")
	return name, what, name != ""
}
