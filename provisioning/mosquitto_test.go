package provisioning

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

// startMosquitto runs a real mosquitto broker with TLS and client-certificate
// authentication, its server certificate issued by the localcloud CA.
func startMosquitto(t *testing.T, cloud *localcloud.Cloud) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("mosquitto not installed: run scripts/install-deps.sh (%v)", err)
	}
	// mosquitto started as root drops to its own user: its files must be readable to it.
	dir, err := os.MkdirTemp("", "edgecam-mosquitto-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	certPEM, keyPEM, err := cloud.IssueServerCertificate("localhost", "127.0.0.1")
	require.NoError(t, err)
	caPEM, err := os.ReadFile(cloud.Paths().CA)
	require.NoError(t, err)
	for name, data := range map[string][]byte{"server.pem": certPEM, "server.key": keyPEM, "ca.pem": caPEM} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := fmt.Sprintf(`per_listener_settings false
persistence false
log_dest stdout
log_type error
log_type warning
listener %d 127.0.0.1
protocol mqtt
cafile %[2]s/ca.pem
certfile %[2]s/server.pem
keyfile %[2]s/server.key
require_certificate true
use_identity_as_username true
allow_anonymous false
`, port, dir)
	confPath := filepath.Join(dir, "mosquitto.conf")
	require.NoError(t, os.WriteFile(confPath, []byte(conf), 0o644))

	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "mosquitto did not start")
	return addr
}

// lockedBuffer collects a process's output safely while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestProvisionThroughMosquitto runs the same fleet provisioning flow against a second real
// broker: mosquitto, with localcloud's responder connected to it as a client.
func TestProvisionThroughMosquitto(t *testing.T) {
	cloud := startCloud(t, localcloud.Options{})
	addr := startMosquitto(t, cloud)

	ctx, cancel := context.WithCancel(context.Background())
	responderDone := make(chan error, 1)
	go func() { responderDone <- cloud.ServeFleetOn(ctx, addr, cloud.CAPool()) }()
	t.Cleanup(func() { cancel(); <-responderDone })

	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	opts := fleetOptions(t, cloud)
	opts.Endpoint = addr
	opts.Attempts = 3 // the responder may still be subscribing
	opts.Timeout = 3 * time.Second
	id, err := Provision(testCtx(t), store, opts)
	require.NoError(t, err)
	require.Equal(t, testSerial, id.ThingName)
	_, ok := cloud.Thing(testSerial)
	require.True(t, ok, "registered through the responder")

	// A refused serial is rejected the same way on this broker.
	opts.Serial = "BCM2835-0000000000000bad"
	opts.Attempts = 1
	_, err = Provision(testCtx(t), store, opts)
	var rej *RejectedError
	require.ErrorAs(t, err, &rej)
	require.Equal(t, 403, rej.StatusCode)
}
