package main

// Whole-process part of the fault suite (make test-faults runs every TestFault*): faults
// that take a signal or a restart, on the built binary.

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// identityFiles lists the identity store's files (key files, identity.json, temporaries).
func identityFiles(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// storedIdentity reads <state>/identity/identity.json and checks that it is whole: its key
// file is there and is the private key of its certificate. It returns the key file's name
// ("" when there is no identity.json).
func storedIdentity(t *testing.T, idDir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(idDir, "identity.json"))
	if os.IsNotExist(err) {
		return ""
	}
	require.NoError(t, err)
	var id struct {
		ThingName      string `json:"thingName"`
		CertificatePEM string `json:"certificatePem"`
		KeyFile        string `json:"keyFile"`
	}
	require.NoError(t, json.Unmarshal(data, &id), "identity.json is whole: %q", data)
	require.Equal(t, "FACTORY-0001", id.ThingName)
	block, _ := pem.Decode([]byte(id.CertificatePEM))
	require.NotNil(t, block, "identity.json holds the certificate")
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(filepath.Join(idDir, id.KeyFile))
	require.NoError(t, err, "identity.json's key file %s is there", id.KeyFile)
	kb, _ := pem.Decode(keyPEM)
	require.NotNil(t, kb, "the key file is whole")
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	require.NoError(t, err)
	pub := key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool })
	require.True(t, pub.Equal(cert.PublicKey), "the certificate belongs to the stored key")
	return id.KeyFile
}

// TestFaultKill9DuringProvisioning kills `edgecam provision` (SIGKILL: no clean-up) at each
// step of fleet provisioning — as it starts, once its new key is written, once identity.json
// (the commit point) is written — and starts it again. The README's promise: every write is
// atomic and identity.json is the commit point, so the kill leaves no identity or the
// complete one, never a half-written key or certificate; a key left without a certificate
// is reused; the next run provisions (or finds the identity) and connects as the thing.
func TestFaultKill9DuringProvisioning(t *testing.T) {
	lc := startLocalcloudProcess(t)
	cfg := filepath.Join(lc, "edgecam.yaml")
	provision := func(state string) *exec.Cmd {
		cmd := exec.Command(binary, "provision", "--config", cfg)
		cmd.Env = append(os.Environ(), "EDGECAM_DEVICE_SERIAL=FACTORY-0001", "EDGECAM_STATE_DIR="+state)
		return cmd
	}
	// A kill point is the first moment the identity directory shows the step done.
	hasKey := func(files []string) bool {
		for _, f := range files {
			if strings.HasPrefix(f, "key-") && strings.HasSuffix(f, ".pem") {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name    string
		at      func(files []string) bool
		pending bool // the kill must land before the commit, leaving the key
	}{
		{"as it starts", func([]string) bool { return true }, false},
		{"once the device key is written", hasKey, true},
		{"once identity.json is written", func(files []string) bool {
			for _, f := range files {
				if f == "identity.json" {
					return true
				}
			}
			return false
		}, false},
	}
	keyKilled := 0 // kills that left a key without an identity
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for attempt := 1; ; attempt++ {
				committed, pending := killProvision(t, provision, tc.name, tc.at)
				if committed == "" && pending != "" {
					keyKilled++
				}
				// The key step must be caught between the key and the commit at least
				// once (the provider's round trips lie between): that is what key reuse is
				// about.
				between := committed == "" && pending != ""
				if !tc.pending || between || attempt == 5 {
					require.False(t, tc.pending && !between, "in %d attempts no kill landed between the key and the commit", attempt)
					return
				}
			}
		})
	}
	t.Logf("%d kill(s) left a key without a certificate", keyKilled)
}

// killProvision runs provision on a new state directory, SIGKILLs it as soon as the
// identity directory shows at(), checks what is left, runs provision again and checks the
// identity. It returns the committed identity's key file and the pending key the kill left.
func killProvision(t *testing.T, provision func(state string) *exec.Cmd, name string, at func([]string) bool) (committed, pending string) {
	state := t.TempDir()
	idDir := filepath.Join(state, "identity")
	cmd := provision(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var files []string
watch:
	for { // the step's first sign, as soon as it shows
		files = identityFiles(idDir)
		if at(files) {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("provision ended (%v) before the kill point (%s):\n%s", err, name, out.String())
		case <-time.After(200 * time.Microsecond):
			continue watch
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	err := <-exited
	var ee *exec.ExitError
	if !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled()) {
		t.Logf("provision had finished before the kill landed (%v)", err)
	}

	// What the kill left: the complete identity, or none; temporaries of an
	// interrupted write are all an interrupted write may leave.
	left := identityFiles(idDir)
	committed = storedIdentity(t, idDir)
	for _, f := range left {
		if strings.HasPrefix(f, "key-") && strings.HasSuffix(f, ".pem") && f != committed {
			kb, _ := os.ReadFile(filepath.Join(idDir, f))
			b, _ := pem.Decode(kb)
			require.NotNil(t, b, "key file %s is whole", f)
			_, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			require.NoError(t, err, "key file %s is whole", f)
			pending = f
		}
	}
	t.Logf("killed %s: left %v (identity: %v, pending key: %q)", name, left, committed != "", pending)

	// Started again, it provisions cleanly, or finds the committed identity.
	again := provision(state)
	res, err := again.CombinedOutput()
	require.NoError(t, err, "provision after the kill:\n%s", res)
	if committed != "" {
		require.Contains(t, string(res), "already provisioned as FACTORY-0001")
	} else {
		require.Contains(t, string(res), "provisioned as FACTORY-0001")
		require.Contains(t, string(res), "connected to 127.0.0.1:")
	}
	final := storedIdentity(t, idDir)
	require.NotEmpty(t, final)
	if committed != "" {
		require.Equal(t, committed, final, "the committed identity is kept")
	} else if pending != "" {
		require.Equal(t, pending, final, "the key left without a certificate is reused")
	}
	for _, f := range identityFiles(idDir) {
		require.False(t, strings.Contains(f, ".tmp-"), "no temporary left: %v", identityFiles(idDir))
		if strings.HasPrefix(f, "key-") {
			require.Equal(t, final, f, "only the identity's key is kept: %v", identityFiles(idDir))
		}
	}
	res, err = provision(state).CombinedOutput()
	require.NoError(t, err, "%s", res)
	require.Contains(t, string(res), "already provisioned as FACTORY-0001", "a third run has nothing to do")
	return committed, pending
}
