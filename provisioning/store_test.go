package provisioning

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// selfSigned makes a certificate for key, standing in for one AWS would issue.
func selfSigned(t *testing.T, key crypto.Signer, cn string) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// newIdentity makes a pending key and an identity for it, as provisioning would.
func newIdentity(t *testing.T, s *Store, thing string) Identity {
	t.Helper()
	key, name, err := s.PendingKey(KeyECDSAP256)
	require.NoError(t, err)
	certPEM := selfSigned(t, key, thing)
	id, err := CertificateID([]byte(certPEM))
	require.NoError(t, err)
	return Identity{ThingName: thing, CertificateID: id, CertificatePEM: certPEM, CAPEM: certPEM, KeyFile: name}
}

func TestStoreRoundTripAndPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := OpenStore(dir)
	require.NoError(t, err)
	_, err = s.Load()
	require.ErrorIs(t, err, ErrNoIdentity)

	id := newIdentity(t, s, "cam-1")
	require.NoError(t, s.Commit(id))
	got, err := s.Load()
	require.NoError(t, err)
	require.Equal(t, "cam-1", got.ThingName)
	require.Equal(t, map[string]string{}, got.DeviceConfiguration)

	for path, want := range map[string]os.FileMode{
		dir:                                     0o700,
		s.Dir():                                 0o700,
		filepath.Join(s.Dir(), "identity.json"): 0o600,
		s.KeyPath(got):                          0o600,
	} {
		st, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, want, st.Mode().Perm(), path)
	}
}

func TestStoreRejectsMismatchedKey(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	id := newIdentity(t, s, "cam-1")
	require.NoError(t, s.Commit(id))
	other := newIdentity(t, s, "cam-2") // a second key: the first one is in use
	require.NotEqual(t, id.KeyFile, other.KeyFile)
	mismatched := id
	mismatched.KeyFile = other.KeyFile
	require.ErrorContains(t, s.Commit(mismatched), "do not match")
	missing := id
	missing.KeyFile = "key-missing.pem"
	require.ErrorContains(t, s.Commit(missing), "provision again")
	require.NoError(t, s.Commit(id))
}

func TestStoreDamagedIdentity(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir(), "identity.json"), []byte("{not json"), 0o600))
	_, err = s.Load()
	require.ErrorContains(t, err, "damaged")
	require.ErrorContains(t, err, "delete it to provision again")
}

// TestStoreCrashAtEveryStep interrupts a re-provisioning commit at each step, as a power
// cut would, and checks that the store then holds either the old identity or the new one,
// complete and consistent, and that provisioning can go on from there.
func TestStoreCrashAtEveryStep(t *testing.T) {
	errCrash := errors.New("power cut")
	for _, step := range []string{"before-identity", "after-identity", "after-derived", ""} {
		t.Run("crash "+step, func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenStore(dir)
			require.NoError(t, err)
			old := newIdentity(t, s, "cam-old")
			require.NoError(t, s.Commit(old))

			next := newIdentity(t, s, "cam-new")
			require.NotEqual(t, old.KeyFile, next.KeyFile)
			s.crash = func(at string) error {
				if at == step {
					return errCrash
				}
				return nil
			}
			err = s.Commit(next)
			if step != "" {
				require.ErrorIs(t, err, errCrash)
			}
			// A leftover temporary file, as a crash inside a write leaves.
			require.NoError(t, os.WriteFile(filepath.Join(s.Dir(), ".identity.json.tmp-123"), []byte("{half"), 0o600))

			reopened, err := OpenStore(dir)
			require.NoError(t, err)
			got, err := reopened.Load()
			require.NoError(t, err)
			switch step {
			case "before-identity":
				require.Equal(t, old.CertificateID, got.CertificateID, "the old identity survives")
			default:
				require.Equal(t, next.CertificateID, got.CertificateID, "the new identity is complete")
			}
			_, err = reopened.TLSCertificate(got)
			require.NoError(t, err, "certificate and key belong together")
			crt, err := os.ReadFile(reopened.CertPath())
			require.NoError(t, err)
			require.Equal(t, got.CertificatePEM, string(crt), "derived device.crt follows identity.json")
			require.NoFileExists(t, filepath.Join(s.Dir(), ".identity.json.tmp-123"))

			if step == "before-identity" {
				// The new key was left without a certificate: it is used again.
				_, name, err := reopened.PendingKey(KeyECDSAP256)
				require.NoError(t, err)
				require.Equal(t, next.KeyFile, name)
			}
		})
	}
}

func TestPendingKeyTypes(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	ec, ecName, err := s.PendingKey(KeyECDSAP256)
	require.NoError(t, err)
	rsaKey, rsaName, err := s.PendingKey(KeyRSA2048)
	require.NoError(t, err)
	require.NotEqual(t, ecName, rsaName, "a pending key of another type is not reused")
	require.NotEqual(t, ec.Public(), rsaKey.Public())
	again, againName, err := s.PendingKey(KeyECDSAP256)
	require.NoError(t, err)
	require.Equal(t, ecName, againName)
	require.True(t, again.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(ec.Public()))
	_, _, err = s.PendingKey("dsa-1024")
	require.ErrorContains(t, err, `key type "dsa-1024"`)
}

func TestOpenStoreErrors(t *testing.T) {
	_, err := OpenStore("")
	require.ErrorContains(t, err, "set state_dir")
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = OpenStore(file)
	require.ErrorContains(t, err, "state directory")
}
