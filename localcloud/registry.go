package localcloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
)

// Certificate statuses, as AWS IoT names them.
const (
	StatusPendingActivation = "PENDING_ACTIVATION"
	StatusActive            = "ACTIVE"
	StatusInactive          = "INACTIVE"
)

// CertRecord is a registered certificate.
type CertRecord struct {
	ID      string    `json:"certificateId"`
	PEM     string    `json:"certificatePem"`
	Status  string    `json:"status"`
	Claim   bool      `json:"claim,omitempty"`
	Things  []string  `json:"things,omitempty"`
	Created time.Time `json:"created"`
}

// Thing is a registered thing.
type Thing struct {
	Name         string            `json:"thingName"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	Certificates []string          `json:"certificates"`
	Created      time.Time         `json:"created"`
}

// registry is localcloud's device registry, persisted as JSON so that provisioned devices
// keep working across restarts. A change returns once it is on disk; changes made while the
// file is being written share the next write (group commit), so that a fleet provisioning
// many devices at once is not held to one fsync'd rewrite of the whole registry per change.
type registry struct {
	path string

	mu      sync.Mutex
	Certs   map[string]*CertRecord `json:"certificates"`
	Things  map[string]*Thing      `json:"things"`
	changes uint64                 // changes made so far (guarded by mu)

	saveMu sync.Mutex // one write at a time
	saved  uint64     // changes on disk (guarded by saveMu)
	// beforeWrite, when set by tests, runs before each write, holding saveMu.
	beforeWrite func()
}

func openRegistry(path string) (*registry, error) {
	r := &registry{path: path, Certs: map[string]*CertRecord{}, Things: map[string]*Thing{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("registry %s: %w", path, err)
	}
	return r, nil
}

// changedLocked counts a change; the caller holds mu, then saves (without mu) what it returns.
func (r *registry) changedLocked() uint64 {
	r.changes++
	return r.changes
}

// save returns once change number n is on disk, writing the registry unless a write that
// started after the change already took it there.
func (r *registry) save(n uint64) error {
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	if r.saved >= n {
		return nil
	}
	if r.beforeWrite != nil {
		r.beforeWrite()
	}
	r.mu.Lock()
	// Compact: indenting took twice as long as encoding, for every device's registration.
	data, err := json.Marshal(r)
	upTo := r.changes
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(r.path, data, 0o600); err != nil {
		return err
	}
	r.saved = upTo
	return nil
}

func (r *registry) addCert(c CertRecord) error {
	r.mu.Lock()
	c.Created = time.Now().UTC()
	r.Certs[c.ID] = &c
	n := r.changedLocked()
	r.mu.Unlock()
	return r.save(n)
}

func (r *registry) cert(id string) (CertRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.Certs[id]
	if !ok {
		return CertRecord{}, false
	}
	return *c, true
}

// registerThing creates or updates the thing, activates the certificate and attaches it.
func (r *registry) registerThing(name, certID string, attrs map[string]string) error {
	r.mu.Lock()
	c, ok := r.Certs[certID]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("certificate %s not found", certID)
	}
	t, ok := r.Things[name]
	if !ok {
		t = &Thing{Name: name, Created: time.Now().UTC()}
		r.Things[name] = t
	}
	t.Attributes = attrs
	if !slices.Contains(t.Certificates, certID) {
		t.Certificates = append(t.Certificates, certID)
	}
	c.Status = StatusActive
	if !slices.Contains(c.Things, name) {
		c.Things = append(c.Things, name)
	}
	n := r.changedLocked()
	r.mu.Unlock()
	return r.save(n)
}

func (r *registry) thing(name string) (Thing, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.Things[name]
	if !ok {
		return Thing{}, false
	}
	return *t, true
}

// thingNames lists registered things, sorted.
func (r *registry) thingNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.Things))
	for n := range r.Things {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
