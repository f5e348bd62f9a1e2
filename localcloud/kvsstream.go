package localcloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
)

// KVS streams as localcloud keeps them: their metadata in one JSON file (so that a stream
// keeps its ARN and version across restarts), their fragments under the data directory
// (kvsmediastore.go).

var streamNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,256}$`)

// kvsStream is a Kinesis video stream.
type kvsStream struct {
	Name                 string            `json:"name"`
	ARN                  string            `json:"arn"`
	DeviceName           string            `json:"deviceName,omitempty"`
	MediaType            string            `json:"mediaType,omitempty"`
	KmsKeyID             string            `json:"kmsKeyId"`
	DataRetentionInHours int               `json:"dataRetentionInHours"`
	Version              string            `json:"version"`
	CreationTime         time.Time         `json:"creationTime"`
	Tags                 map[string]string `json:"tags,omitempty"`
	// ActiveAt is when the stream turns from CREATING to ACTIVE (by the real clock).
	ActiveAt time.Time `json:"activeAt"`
}

func (s kvsStream) status() string {
	if time.Now().Before(s.ActiveAt) {
		return "CREATING"
	}
	return "ACTIVE"
}

var (
	errStreamExists   = errors.New("stream exists")
	errStreamMissing  = errors.New("stream not found")
	errVersionChanged = errors.New("version mismatch")
)

// streamStore keeps the streams.
type streamStore struct {
	path, region, account string
	activation            time.Duration

	mu     sync.Mutex
	byName map[string]kvsStream
}

func openStreamStore(path, region, account string, activation time.Duration) (*streamStore, error) {
	s := &streamStore{path: path, region: region, account: account, activation: activation, byName: map[string]kvsStream{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var list []kvsStream
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("KVS streams %s: %w (delete the file to start afresh)", path, err)
	}
	for _, st := range list {
		s.byName[st.Name] = st
	}
	return s, nil
}

// create adds a stream created at now (the service's clock).
func (s *streamStore) create(st kvsStream, now time.Time, immediate bool) (kvsStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byName[st.Name]; ok {
		return old, errStreamExists
	}
	st.ARN = fmt.Sprintf("arn:aws:kinesisvideo:%s:%s:stream/%s/%d", s.region, s.account, st.Name, now.UnixMilli())
	st.Version = randomUpper(20)
	st.CreationTime = now.UTC().Truncate(time.Millisecond)
	if st.KmsKeyID == "" {
		st.KmsKeyID = fmt.Sprintf("arn:aws:kms:%s:%s:alias/aws/kinesisvideo", s.region, s.account)
	}
	st.ActiveAt = time.Now()
	if !immediate {
		st.ActiveAt = st.ActiveAt.Add(s.activation)
	}
	s.byName[st.Name] = st
	if err := s.saveLocked(); err != nil {
		delete(s.byName, st.Name)
		return kvsStream{}, err
	}
	return st, nil
}

// update changes a stream under the lock; version, when not empty, must be the current one.
// A change of anything but tags gets a new version.
func (s *streamStore) update(name, version string, newVersion bool, change func(*kvsStream) error) (kvsStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byName[name]
	if !ok {
		return kvsStream{}, errStreamMissing
	}
	if version != "" && version != st.Version {
		return st, errVersionChanged
	}
	old := st
	if st.Tags != nil {
		tags := make(map[string]string, len(st.Tags))
		for k, v := range st.Tags {
			tags[k] = v
		}
		st.Tags = tags
	}
	if err := change(&st); err != nil {
		return old, err
	}
	if newVersion {
		st.Version = randomUpper(20)
	}
	s.byName[name] = st
	if err := s.saveLocked(); err != nil {
		s.byName[name] = old
		return old, err
	}
	return st, nil
}

func (s *streamStore) remove(name, version string) (kvsStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byName[name]
	if !ok {
		return kvsStream{}, errStreamMissing
	}
	if version != "" && version != st.Version {
		return st, errVersionChanged
	}
	delete(s.byName, name)
	if err := s.saveLocked(); err != nil {
		s.byName[name] = st
		return st, err
	}
	return st, nil
}

func (s *streamStore) saveLocked() error {
	list := make([]kvsStream, 0, len(s.byName))
	for _, st := range s.byName {
		list = append(list, st)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, append(data, '\n'), 0o644)
}

func (s *streamStore) named(name string) (kvsStream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byName[name]
	return st, ok
}

func (s *streamStore) withARN(arn string) (kvsStream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.byName {
		if st.ARN == arn {
			return st, true
		}
	}
	return kvsStream{}, false
}

// list returns the streams sorted by name.
func (s *streamStore) list() []kvsStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]kvsStream, 0, len(s.byName))
	for _, st := range s.byName {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
