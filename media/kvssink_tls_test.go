package media

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// kvsTLSChild marks the process that runs the TLS scenario: kvssink reads
// KVSSINK_CA_CERT_PATH once per process, so the scenario runs in a fresh one.
const kvsTLSChild = "EDGECAM_KVSSINK_TLS_CHILD"

func TestKVSSinkTLSControlPlaneWithPrivateCA(t *testing.T) {
	kvssinkForTest(t)
	if os.Getenv(kvsTLSChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKVSSinkTLSControlPlaneWithPrivateCA$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), kvsTLSChild+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "--- PASS: TestKVSSinkTLSControlPlaneWithPrivateCA")
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "kvssink_tls_test.go") {
				t.Log(strings.TrimSpace(l))
			}
		}
		return
	}
	w := newKVSWorld(t, time.Hour)
	w.mu.Lock()
	tlsEndpoint, ca := w.cloud.KVSTLSEndpoint(), w.cloud.Paths().CA
	w.mu.Unlock()
	require.True(t, strings.HasPrefix(tlsEndpoint, "https://"))
	klog, err := StartKVSSinkLog(filepath.Join(w.dir, "kvssink-log"), zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named("kvssink"), false)
	require.NoError(t, err)
	t.Cleanup(klog.Close)
	rec, err := NewKVSSinkRecorder(KVSSinkOptions{StreamName: e2eThing, Region: "us-east-1", StorageSizeMB: 32, FragmentDuration: 2 * time.Second,
		RetentionHours: 24, StreamingType: "realtime", CreateStream: true, CredentialFile: w.creds, ControlPlaneURI: tlsEndpoint, CACertPath: ca,
		LogConfig: klog.ConfigPath(), StartupTimeout: 20 * time.Second, Drain: 10 * time.Second, Log: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))})
	require.NoError(t, err)
	clip, _ := testclip.Path(t, testclip.Ball)
	w.capture(rec, clip, true, func(context.Context) {
		require.Eventually(t, func() bool { return rec.Stats().Persisted >= 3 }, 30*time.Second, 50*time.Millisecond,
			"fragments persisted over TLS with localcloud's private CA (KVSSINK_CA_CERT_PATH)")
	})
	list := w.fragments(e2eThing)
	t.Logf("over %s with CA %s: %d fragments persisted; kvssink stats %+v", tlsEndpoint, ca, len(list), rec.Stats())
	require.GreaterOrEqual(t, len(list), 3)
}

func TestKVSSinkCACertMustBePEM(t *testing.T) {
	dir := t.TempDir()
	crt := filepath.Join(dir, "AmazonRootCA1.crt")
	require.NoError(t, os.WriteFile(crt, []byte("x"), 0o600))
	_, err := NewKVSSinkRecorder(KVSSinkOptions{StreamName: "s", Region: "us-east-1", StreamingType: "realtime", CredentialFile: "/c", CACertPath: crt})
	require.ErrorContains(t, err, "must end in .pem")
}
