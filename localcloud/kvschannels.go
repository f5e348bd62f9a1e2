package localcloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
)

// signalingChannel is a KVS signaling channel as localcloud keeps it.
type signalingChannel struct {
	Name              string            `json:"name"`
	ARN               string            `json:"arn"`
	Type              string            `json:"type"`
	MessageTTLSeconds int               `json:"messageTtlSeconds"`
	Version           string            `json:"version"`
	CreationTime      time.Time         `json:"creationTime"`
	Tags              map[string]string `json:"tags,omitempty"`
	// ActiveAt is when a new channel turns from CREATING to ACTIVE, by the real clock (a
	// skewed service clock in a test must not hold a channel back).
	ActiveAt time.Time `json:"activeAt"`
}

// status is CREATING until ActiveAt, then ACTIVE.
func (c signalingChannel) status() string {
	if time.Now().Before(c.ActiveAt) {
		return "CREATING"
	}
	return "ACTIVE"
}

var errChannelExists = errors.New("channel exists")

// channelStore keeps the signaling channels, in memory and in a JSON file (so that a
// channel keeps its ARN across restarts).
type channelStore struct {
	path, region, account string
	activation            time.Duration

	mu     sync.Mutex
	byName map[string]signalingChannel
}

func openChannelStore(path, region, account string, activation time.Duration) (*channelStore, error) {
	s := &channelStore{path: path, region: region, account: account, activation: activation, byName: map[string]signalingChannel{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var list []signalingChannel
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("signaling channels %s: %w (delete the file to start afresh)", path, err)
	}
	for _, c := range list {
		s.byName[c.Name] = c
	}
	return s, nil
}

// create adds a channel created at now (the service's clock), ACTIVE after the store's
// activation delay or, when immediate, at once. It fails with errChannelExists when the name
// is taken.
func (s *channelStore) create(name string, ttlSeconds int, tags map[string]string, now time.Time, immediate bool) (signalingChannel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byName[name]; ok {
		return c, errChannelExists
	}
	c := signalingChannel{
		Name:              name,
		ARN:               fmt.Sprintf("arn:aws:kinesisvideo:%s:%s:channel/%s/%d", s.region, s.account, name, now.UnixMilli()),
		Type:              "SINGLE_MASTER",
		MessageTTLSeconds: ttlSeconds,
		Version:           randomUpper(20),
		CreationTime:      now.UTC().Truncate(time.Millisecond),
		Tags:              tags,
		ActiveAt:          time.Now(),
	}
	if !immediate {
		c.ActiveAt = c.ActiveAt.Add(s.activation)
	}
	s.byName[name] = c
	if err := s.saveLocked(); err != nil {
		delete(s.byName, name)
		return signalingChannel{}, err
	}
	return c, nil
}

func (s *channelStore) saveLocked() error {
	list := make([]signalingChannel, 0, len(s.byName))
	for _, c := range s.byName {
		list = append(list, c)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, append(data, '\n'), 0o644)
}

func (s *channelStore) named(name string) (signalingChannel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byName[name]
	return c, ok
}

func (s *channelStore) withARN(arn string) (signalingChannel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.byName {
		if c.ARN == arn {
			return c, true
		}
	}
	return signalingChannel{}, false
}
