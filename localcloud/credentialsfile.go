package localcloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
)

// Issued credentials outlive a restart of localcloud, as they outlive any restart of AWS's
// services: a producer (kvssink, the native uploader) keeps signing with the credentials it
// holds until they near expiry, so a localcloud that forgot them would refuse it for up to
// their whole lifetime. They are kept (unexpired ones only) in DIR/issued-credentials.json.

// openCredentialStore loads the unexpired credentials kept in path ("" keeps none).
func openCredentialStore(path string) (*credentialStore, error) {
	s := &credentialStore{path: path, byKey: map[string]IssuedCredentials{}}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var list []IssuedCredentials
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("issued credentials %s: %w (delete the file to start afresh)", path, err)
	}
	now := time.Now()
	for _, c := range list {
		if now.Before(c.Expiration) {
			s.byKey[c.AccessKeyID] = c
		}
	}
	return s, nil
}

// saveLocked writes the unexpired credentials (owner-only: they are secrets).
func (s *credentialStore) saveLocked() error {
	if s.path == "" {
		return nil
	}
	list := make([]IssuedCredentials, 0, len(s.byKey))
	for _, c := range s.byKey {
		list = append(list, c)
	}
	data, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, data, 0o600)
}
