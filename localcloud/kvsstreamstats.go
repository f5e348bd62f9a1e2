package localcloud

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// StreamStats are the counters of one KVS stream since localcloud started.
type StreamStats struct {
	// BytesIngested counts every PutMedia body byte read (what AWS bills as data ingested).
	BytesIngested int64 `json:"bytesIngested"`
	// BytesStored counts the bytes of the fragments stored.
	BytesStored int64 `json:"bytesStored"`
	// Fragments received complete; FragmentsPersisted stored; Duplicates re-sent fragments
	// already stored (acknowledged with the stored number).
	Fragments          int64 `json:"fragments"`
	FragmentsPersisted int64 `json:"fragmentsPersisted"`
	Duplicates         int64 `json:"duplicates"`
	// Connections counts PutMedia requests.
	Connections int64 `json:"connections"`
	// OrphanBlocks counts blocks skipped at the start of a connection that began in the
	// middle of a fragment (its start went out on a broken connection).
	OrphanBlocks int64 `json:"orphanBlocks"`
	// Acks by EventType (BUFFERING, RECEIVED, PERSISTED, ERROR, IDLE).
	Acks map[string]int64 `json:"acks"`
	// Errors by ErrorId ("4006": 1).
	Errors map[string]int64 `json:"errors"`
}

type streamStats struct {
	mu sync.Mutex
	s  StreamStats
}

func (st *streamStats) add(f func(*StreamStats)) {
	st.mu.Lock()
	f(&st.s)
	st.mu.Unlock()
}

func (st *streamStats) ingest(n int)   { st.add(func(s *StreamStats) { s.BytesIngested += int64(n) }) }
func (st *streamStats) connection()    { st.add(func(s *StreamStats) { s.Connections++ }) }
func (st *streamStats) fragment()      { st.add(func(s *StreamStats) { s.Fragments++ }) }
func (st *streamStats) duplicate()     { st.add(func(s *StreamStats) { s.Duplicates++ }) }
func (st *streamStats) orphans(n int)  { st.add(func(s *StreamStats) { s.OrphanBlocks += int64(n) }) }
func (st *streamStats) errorID(id int) { st.add(func(s *StreamStats) { s.Errors[strconv.Itoa(id)]++ }) }
func (st *streamStats) ack(a ack)      { st.add(func(s *StreamStats) { s.Acks[a.EventType]++ }) }
func (st *streamStats) persisted(size int64) {
	st.add(func(s *StreamStats) { s.FragmentsPersisted++; s.BytesStored += size })
}

func (st *streamStats) snapshot() StreamStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := st.s
	out.Acks, out.Errors = map[string]int64{}, map[string]int64{}
	for k, v := range st.s.Acks {
		out.Acks[k] = v
	}
	for k, v := range st.s.Errors {
		out.Errors[k] = v
	}
	return out
}

type streamStatsSet struct {
	mu sync.Mutex
	m  map[string]*streamStats
}

func newStreamStatsSet() *streamStatsSet { return &streamStatsSet{m: map[string]*streamStats{}} }

func (set *streamStatsSet) get(name string) *streamStats {
	set.mu.Lock()
	defer set.mu.Unlock()
	st, ok := set.m[name]
	if !ok {
		st = &streamStats{s: StreamStats{Acks: map[string]int64{}, Errors: map[string]int64{}}}
		set.m[name] = st
	}
	return st
}

func (set *streamStatsSet) all() map[string]StreamStats {
	set.mu.Lock()
	defer set.mu.Unlock()
	out := make(map[string]StreamStats, len(set.m))
	for name, st := range set.m {
		out[name] = st.snapshot()
	}
	return out
}

// serveStats answers GET /kvs/streams/ (every stream's counters) and
// GET /kvs/streams/<name>/stats.
func (s *streamService) serveStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == "/kvs/streams/" || r.URL.Path == "/kvs/streams" {
		_ = json.NewEncoder(w).Encode(s.stats.all())
		return
	}
	name, what, ok := kvsPathStream(r.URL.Path)
	if ok && what == "motion" {
		s.serveMotion(w, name)
		return
	}
	if !ok || what != "stats" {
		serviceError(http.StatusNotFound, "ResourceNotFoundException", "use /kvs/streams/<name>/stats or /kvs/streams/<name>/motion").write(w)
		return
	}
	if _, ok := s.streams.named(name); !ok {
		errStreamNotFound().write(w)
		return
	}
	_ = json.NewEncoder(w).Encode(s.stats.get(name).snapshot())
}

// KVSStreamStats returns a stream's counters since localcloud started.
func (c *Cloud) KVSStreamStats(name string) (StreamStats, error) {
	k, err := c.kvsRunning()
	if err != nil {
		return StreamStats{}, err
	}
	return k.streams.stats.get(name).snapshot(), nil
}
