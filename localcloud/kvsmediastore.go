package localcloud

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
	"github.com/edgecam/edgecam/localcloud/mkv"
)

// The fragments of each stream, on disk: <dir>/<stream>/<fragment number>.mkv, each a
// self-contained MKV (EBML header, Segment, Info, Tracks and the fragment's Cluster), and
// <dir>/<stream>/index.jsonl, one line per fragment.

// storedFragment is a fragment's index entry.
type storedFragment struct {
	Number     string `json:"number"`
	ProducerMs int64  `json:"producerMs"` // producer timestamp, epoch ms
	ServerMs   int64  `json:"serverMs"`   // when localcloud received it, epoch ms
	DurationMs int64  `json:"durationMs"`
	Size       int64  `json:"size"` // bytes of the stored MKV
	Frames     int    `json:"frames"`
	// TimecodeMs is the Cluster's timecode as the producer sent it (FragmentTimecode).
	TimecodeMs int64 `json:"timecodeMs"`
}

func (f storedFragment) producerTime() time.Time { return time.UnixMilli(f.ProducerMs) }
func (f storedFragment) serverTime() time.Time   { return time.UnixMilli(f.ServerMs) }

type streamFragments struct {
	list       []storedFragment // by producer timestamp, then number
	byProducer map[int64]string
}

// mediaStore keeps every stream's fragments.
type mediaStore struct {
	dir string
	seq atomic.Uint64

	mu      sync.Mutex
	streams map[string]*streamFragments
	// gone marks deleted streams: a fragment still in flight is not stored for them.
	gone map[string]bool
	// changed is closed (and replaced) whenever a fragment is added: GetMedia waits on it.
	changed chan struct{}
	sweep   chan struct{}
}

func newMediaStore(dir string) (*mediaStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("KVS fragment store: %w", err)
	}
	return &mediaStore{dir: dir, streams: map[string]*streamFragments{}, gone: map[string]bool{}, changed: make(chan struct{}), sweep: make(chan struct{}, 1)}, nil
}

// streamDir is where a stream's fragments go; the names "." and ".." (valid stream names)
// get a directory of their own instead of this one or its parent.
func (m *mediaStore) streamDir(name string) string {
	if strings.Trim(name, ".") == "" {
		name = strings.Repeat("%2E", len(name))
	}
	return filepath.Join(m.dir, name)
}

// loadLocked reads a stream's index once.
func (m *mediaStore) loadLocked(name string) *streamFragments {
	if sf, ok := m.streams[name]; ok {
		return sf
	}
	sf := &streamFragments{byProducer: map[int64]string{}}
	m.streams[name] = sf
	f, err := os.Open(filepath.Join(m.streamDir(name), "index.jsonl"))
	if err != nil {
		return sf
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var fr storedFragment
		if json.Unmarshal(sc.Bytes(), &fr) != nil || fr.Number == "" {
			continue // a line cut by a crash
		}
		if _, err := os.Stat(m.fragmentPath(name, fr.Number)); err != nil {
			continue
		}
		sf.list = append(sf.list, fr)
		sf.byProducer[fr.ProducerMs] = fr.Number
	}
	sortFragments(sf.list)
	return sf
}

func sortFragments(list []storedFragment) {
	sort.Slice(list, func(i, j int) bool {
		if list[i].ProducerMs != list[j].ProducerMs {
			return list[i].ProducerMs < list[j].ProducerMs
		}
		return list[i].Number < list[j].Number
	})
}

func (m *mediaStore) fragmentPath(name, number string) string {
	return filepath.Join(m.streamDir(name), number+".mkv")
}

// newNumber is a fragment number: decimal, fixed width, increasing with the server time.
func (m *mediaStore) newNumber(serverMs int64) string {
	return fmt.Sprintf("9134385233318%013d%07d", serverMs, m.seq.Add(1)%10000000)
}

// add stores a fragment (data is its MKV) and returns its entry; a fragment with the same
// producer timestamp already stored is returned instead (a producer re-sending).
func (m *mediaStore) add(name string, fr storedFragment, data []byte) (storedFragment, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone[name] {
		return fr, false, errStreamMissing
	}
	sf := m.loadLocked(name)
	if n, ok := sf.byProducer[fr.ProducerMs]; ok {
		for _, old := range sf.list {
			if old.Number == n {
				return old, true, nil
			}
		}
	}
	if err := os.MkdirAll(m.streamDir(name), 0o755); err != nil {
		return fr, false, err
	}
	fr.Number = m.newNumber(fr.ServerMs)
	fr.Size = int64(len(data))
	if err := atomicfile.Write(m.fragmentPath(name, fr.Number), data, 0o644); err != nil {
		return fr, false, err
	}
	line, _ := json.Marshal(fr)
	f, err := os.OpenFile(filepath.Join(m.streamDir(name), "index.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fr, false, err
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fr, false, err
	}
	sf.list = append(sf.list, fr)
	if n := len(sf.list); n > 1 && sf.list[n-2].ProducerMs > fr.ProducerMs {
		sortFragments(sf.list)
	}
	sf.byProducer[fr.ProducerMs] = fr.Number
	close(m.changed)
	m.changed = make(chan struct{})
	return fr, false, nil
}

// fragments returns a stream's fragments by producer timestamp, and a channel closed at the
// next change.
func (m *mediaStore) fragments(name string) ([]storedFragment, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]storedFragment(nil), m.loadLocked(name).list...), m.changed
}

// read returns a stored fragment's MKV.
func (m *mediaStore) read(name, number string) ([]byte, error) {
	return os.ReadFile(m.fragmentPath(name, number))
}

// removeStream deletes a stream's fragments.
func (m *mediaStore) removeStream(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.streams, name)
	m.gone[name] = true
	close(m.changed)
	m.changed = make(chan struct{})
	return os.RemoveAll(m.streamDir(name))
}

// revive lets a stream created again (after a delete) store fragments.
func (m *mediaStore) revive(name string) {
	m.mu.Lock()
	delete(m.gone, name)
	m.mu.Unlock()
}

func (m *mediaStore) sweepSoon() {
	select {
	case m.sweep <- struct{}{}:
	default:
	}
}

// expire deletes the fragments of a stream received before cutoff, and returns how many.
func (m *mediaStore) expire(name string, cutoff time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sf := m.loadLocked(name)
	keep := sf.list[:0:0]
	var errs []error
	removed := 0
	for _, fr := range sf.list {
		if fr.serverTime().Before(cutoff) {
			if err := os.Remove(m.fragmentPath(name, fr.Number)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
				keep = append(keep, fr)
				continue
			}
			delete(sf.byProducer, fr.ProducerMs)
			removed++
			continue
		}
		keep = append(keep, fr)
	}
	if removed == 0 {
		return 0, errors.Join(errs...)
	}
	sf.list = keep
	var lines []byte
	for _, fr := range keep {
		line, _ := json.Marshal(fr)
		lines = append(append(lines, line...), '\n')
	}
	errs = append(errs, atomicfile.Write(filepath.Join(m.streamDir(name), "index.jsonl"), lines, 0o644))
	return removed, errors.Join(errs...)
}

// fragmentMKV builds a stored fragment: the EBML header, a Segment of known size holding
// Info, Tracks and one Cluster of known size (its Timecode and blocks).
func fragmentMKV(ebmlHeader, info, tracks []byte, clusterChildren [][]byte) []byte {
	cluster := mkv.Element(mkv.IDCluster, mkv.Concat(clusterChildren...))
	return mkv.Concat(ebmlHeader, mkv.Element(mkv.IDSegment, mkv.Concat(info, tracks, cluster)))
}

// parsedFragment is a stored fragment read back.
type parsedFragment struct {
	EBMLHeader, Info, Tracks []byte
	TimecodeScale            uint64
	Track                    mkv.Track // the first video track
	ClusterTimecode          int64
	Blocks                   []mkv.Block
	BlockRaw                 [][]byte
}

// parseFragment reads a stored fragment.
func parseFragment(data []byte) (parsedFragment, error) {
	var p parsedFragment
	d := mkv.NewDemuxer(bytes.NewReader(data), mkv.Limits{MaxBlock: 64 << 20})
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return p, err
		}
		switch ev.Kind {
		case mkv.EventEBMLHeader:
			p.EBMLHeader = ev.Raw
		case mkv.EventInfo:
			p.Info, p.TimecodeScale = ev.Raw, ev.TimecodeScale
		case mkv.EventTracks:
			p.Tracks = ev.Raw
			p.Track = ev.Tracks[0]
			for _, t := range ev.Tracks {
				if t.Type == 1 {
					p.Track = t
					break
				}
			}
		case mkv.EventClusterStart:
			p.ClusterTimecode = ev.Timecode
		case mkv.EventBlock:
			p.Blocks = append(p.Blocks, ev.Block)
			p.BlockRaw = append(p.BlockRaw, ev.Raw)
		}
	}
	return p, nil
}
