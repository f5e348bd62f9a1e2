// Package provisioning turns a bootstrap claim certificate into the device's own identity
// with AWS IoT fleet provisioning (CSR flow: the private key never leaves the device), keeps
// that identity in the state directory, and exchanges it for temporary AWS credentials at
// the AWS IoT credentials provider (also kept in kvssink's credential file).
package provisioning

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
)

// Key types for the device's private key.
const (
	KeyECDSAP256 = "ecdsa-p256"
	KeyRSA2048   = "rsa-2048"
)

// ErrNoIdentity means the device has not been provisioned yet.
var ErrNoIdentity = errors.New("device not provisioned yet")

// Identity is the device's provisioned identity.
type Identity struct {
	ThingName           string            `json:"thingName"`
	CertificateID       string            `json:"certificateId"`
	CertificatePEM      string            `json:"certificatePem"`
	CAPEM               string            `json:"caPem,omitempty"`
	KeyFile             string            `json:"keyFile"` // name of the key file in the identity directory
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
	Endpoint            string            `json:"endpoint"`
	Serial              string            `json:"serial"`
	ProvisionedAt       time.Time         `json:"provisionedAt"`
}

// Store keeps the identity in <state_dir>/identity. identity.json is the commit point: it is
// replaced atomically and names the key file it belongs to, so a crash at any instant leaves
// either the previous identity or the complete new one. Key files are written (0600) before
// the identity that uses them; device.crt and ca.pem are copies derived from identity.json.
type Store struct {
	dir string
	// crash, when set by tests, is called between the steps of a commit; an error stops the
	// commit there, as a power cut would.
	crash func(step string) error
}

const (
	identityFile = "identity.json"
	certFile     = "device.crt"
	caFile       = "ca.pem"
	keyPrefix    = "key-"
)

// OpenStore opens (creating, 0700) the identity store under stateDir.
func OpenStore(stateDir string) (*Store, error) {
	if stateDir == "" {
		return nil, errors.New("state directory not set: set state_dir (or --state-dir)")
	}
	dir := filepath.Join(stateDir, "identity")
	for _, d := range []string{stateDir, dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("state directory: %w; set state_dir to a directory this user can write", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("state directory %s: %w", d, err)
		}
	}
	s := &Store{dir: dir}
	s.removeTemporaries()
	return s, nil
}

// Dir returns the identity directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) step(name string) error {
	if s.crash != nil {
		return s.crash(name)
	}
	return nil
}

// removeTemporaries deletes what an interrupted atomic write left behind.
func (s *Store) removeTemporaries() {
	matches, _ := filepath.Glob(filepath.Join(s.dir, ".*.tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// Load returns the committed identity, ErrNoIdentity when there is none, or an error when
// it is damaged. It refreshes the derived device.crt and ca.pem.
func (s *Store) Load() (*Identity, error) {
	id, err := s.readIdentity()
	if err != nil {
		return nil, err
	}
	if _, err := s.TLSCertificate(id); err != nil {
		return nil, err
	}
	if err := s.writeDerived(id); err != nil {
		return nil, err
	}
	return id, nil
}

// readIdentity reads identity.json, checking nothing else and writing nothing.
func (s *Store) readIdentity() (*Identity, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, identityFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoIdentity
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("identity %s is damaged (%v); delete it to provision again", filepath.Join(s.dir, identityFile), err)
	}
	return &id, nil
}

// TLSCertificate returns the identity's certificate and key for mutual TLS.
func (s *Store) TLSCertificate(id *Identity) (tls.Certificate, error) {
	keyPEM, err := os.ReadFile(s.KeyPath(id))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("device key: %w; delete %s to provision again", err, filepath.Join(s.dir, identityFile))
	}
	cert, err := tls.X509KeyPair([]byte(id.CertificatePEM), keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("device certificate and key %s do not match (%v); delete %s to provision again",
			s.KeyPath(id), err, filepath.Join(s.dir, identityFile))
	}
	return cert, nil
}

// KeyPath, CertPath and CAPath are the files kvssink's iot-certificate option needs.
func (s *Store) KeyPath(id *Identity) string { return filepath.Join(s.dir, id.KeyFile) }

// CertPath returns the path of the device certificate (derived from identity.json).
func (s *Store) CertPath() string { return filepath.Join(s.dir, certFile) }

// CAPath returns the path of the CA certificate of the endpoint (derived from identity.json).
func (s *Store) CAPath() string { return filepath.Join(s.dir, caFile) }

func (s *Store) writeDerived(id *Identity) error {
	if err := writeIfChanged(s.CertPath(), []byte(id.CertificatePEM), 0o644); err != nil {
		return err
	}
	if id.CAPEM != "" {
		return writeIfChanged(s.CAPath(), []byte(id.CAPEM), 0o644)
	}
	return nil
}

func writeIfChanged(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	return atomicfile.Write(path, data, perm)
}

// PendingKey returns a private key for a new certificate signing request: a key file that
// an interrupted provisioning left without a certificate, or a new one of keyType, written
// (0600) before anything is sent.
func (s *Store) PendingKey(keyType string) (crypto.Signer, string, error) {
	referenced := "" // the committed identity's key is never reused for a new certificate
	if id, err := s.readIdentity(); err == nil {
		referenced = id.KeyFile
	}
	for _, name := range s.keyFiles() {
		if name == referenced {
			continue
		}
		key, err := readKey(filepath.Join(s.dir, name))
		if err == nil && keyMatchesType(key, keyType) {
			return key, name, nil
		}
	}
	key, err := generateKey(keyType)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", fmt.Errorf("device key: %w", err)
	}
	name, err := s.saveKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		return nil, "", err
	}
	return key, name, nil
}

// SaveKey stores a private key received from CreateKeysAndCertificate and returns its name.
func (s *Store) SaveKey(keyPEM []byte) (string, error) { return s.saveKey(keyPEM) }

func (s *Store) saveKey(keyPEM []byte) (string, error) {
	sum := sha256.Sum256(keyPEM)
	name := keyPrefix + hex.EncodeToString(sum[:6]) + ".pem"
	if err := atomicfile.Write(filepath.Join(s.dir, name), keyPEM, 0o600); err != nil {
		return "", fmt.Errorf("device key: %w", err)
	}
	return name, nil
}

// keyFiles lists key files, newest first.
func (s *Store) keyFiles() []string {
	entries, _ := os.ReadDir(s.dir)
	type kf struct {
		name string
		mod  time.Time
	}
	var keys []kf
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), keyPrefix) && strings.HasSuffix(e.Name(), ".pem") {
			if info, err := e.Info(); err == nil {
				keys = append(keys, kf{e.Name(), info.ModTime()})
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].mod.After(keys[j].mod) })
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// Commit makes id the device's identity. Its key file must already be in the store.
func (s *Store) Commit(id Identity) error {
	if _, err := s.TLSCertificate(&id); err != nil {
		return err
	}
	if id.DeviceConfiguration == nil {
		id.DeviceConfiguration = map[string]string{}
	}
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	if err := s.step("before-identity"); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(s.dir, identityFile), data, 0o600); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := s.step("after-identity"); err != nil {
		return err
	}
	if err := s.writeDerived(&id); err != nil {
		return err
	}
	if err := s.step("after-derived"); err != nil {
		return err
	}
	// Keys of earlier identities are no longer needed.
	for _, name := range s.keyFiles() {
		if name != id.KeyFile {
			os.Remove(filepath.Join(s.dir, name))
		}
	}
	return atomicfile.SyncDir(s.dir)
}

func generateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case KeyECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("key type %q: use %s or %s", keyType, KeyECDSAP256, KeyRSA2048)
}

func keyMatchesType(key crypto.Signer, keyType string) bool {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return (keyType == KeyECDSAP256 || keyType == "") && k.Curve == elliptic.P256()
	case *rsa.PrivateKey:
		return keyType == KeyRSA2048 && k.N.BitLen() == 2048
	}
	return false
}

// readKey reads a PEM private key: PKCS#8, PKCS#1 (AWS's CreateKeysAndCertificate) or SEC 1.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKey(data)
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key (%s)", block.Type)
}

// CertificateID returns AWS IoT's certificate ID: the SHA-256 of the DER certificate, in hex.
func CertificateID(certPEM []byte) (string, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate")
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:]), nil
}
