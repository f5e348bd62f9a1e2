package iot_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/clock"
	"github.com/edgecam/edgecam/iot"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/edgecam/edgecam/provisioning"
	"github.com/stretchr/testify/require"
)

func TestQueueKeepsOrderAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	q, err := iot.OpenQueue(iot.QueueOptions{Dir: dir})
	require.NoError(t, err)
	for i := range 5 {
		require.NoError(t, q.Enqueue("edgecam/x/events", []byte(fmt.Sprint(i)), 1))
	}
	require.Error(t, q.Enqueue("edgecam/x/events", nil, 2), "QoS 2 is not AWS IoT's")
	require.Error(t, q.Enqueue("", nil, 1))
	// A write cut short by a crash leaves a temporary file: it is not a message.
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".00000000000000000009.msg.tmp-1"), []byte("{"), 0o600))
	again, err := iot.OpenQueue(iot.QueueOptions{Dir: dir})
	require.NoError(t, err)
	require.Equal(t, 5, again.Len())
	require.NoError(t, again.Enqueue("edgecam/x/events", []byte("5"), 1))
	names, err := filepath.Glob(filepath.Join(dir, "*.msg"))
	require.NoError(t, err)
	require.Len(t, names, 6)
	for i, n := range names { // sequence-numbered names: lexical order is queue order
		var m struct{ Payload []byte }
		data, err := os.ReadFile(n)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &m))
		require.Equal(t, fmt.Sprint(i), string(m.Payload))
	}
	_, err = os.Stat(filepath.Join(dir, ".00000000000000000009.msg.tmp-1"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestQueueBounded(t *testing.T) {
	q, err := iot.OpenQueue(iot.QueueOptions{Dir: t.TempDir(), MaxBytes: 1000})
	require.NoError(t, err)
	for range 50 {
		require.NoError(t, q.Enqueue("edgecam/x/events", make([]byte, 100), 1))
	}
	waiting, _, dropped := q.Stats()
	require.Less(t, waiting, 10)
	require.Equal(t, uint64(50-waiting), dropped)
}

// freePort returns a TCP port free on 127.0.0.1 now, so that a restarted localcloud can
// listen where the first one did.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type received struct {
	mu   sync.Mutex
	msgs []string
}

func (r *received) add(_ string, p []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, string(p))
	r.mu.Unlock()
}

func (r *received) distinct() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, m := range r.msgs {
		if !seen[m] { // at least once: a message may come twice
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// TestQueuedPublishesSurviveOutageAndRestart: the broker goes away while messages are
// queued, the process "restarts" (connection closed, queue opened again from its
// directory), more messages are queued, the broker comes back: every message arrives, in
// order. Without the queue, a publish while the connection is down is lost.
func TestQueuedPublishesSurviveOutageAndRestart(t *testing.T) {
	const serial = "cam-queue-1"
	opts := localcloud.Options{Dir: t.TempDir(), AllowSerials: []string{serial}, MQTTPort: freePort(t), CredentialsPort: freePort(t), KVSPort: freePort(t)}
	cloud, err := localcloud.Open(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, cloud.Start(ctx))
	defer func() { cloud.Close() }()
	var got received
	require.NoError(t, cloud.Observe("edgecam/+/events/#", got.add))

	claim, err := tls.LoadX509KeyPair(cloud.Paths().ClaimCert, cloud.Paths().ClaimKey)
	require.NoError(t, err)
	store, err := provisioning.OpenStore(t.TempDir())
	require.NoError(t, err)
	id, err := provisioning.Provision(ctx, store, provisioning.FleetOptions{
		Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), ClaimCert: claim, Template: cloud.Template(), Serial: serial, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	cert, err := store.TLSCertificate(id)
	require.NoError(t, err)
	topic := "edgecam/" + id.ThingName + "/events/motion"
	qdir := t.TempDir()
	dial := func(q *iot.Queue) *iot.Conn {
		conn, err := iot.Dial(ctx, iot.Options{Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), Certificate: cert, ClientID: id.ThingName, Queue: q})
		require.NoError(t, err)
		return conn
	}

	q, err := iot.OpenQueue(iot.QueueOptions{Dir: qdir})
	require.NoError(t, err)
	conn := dial(q)
	want := []string{"e1", "e2"}
	for _, e := range want {
		require.NoError(t, q.Enqueue(topic, []byte(e), 1))
	}
	require.Eventually(t, func() bool { return len(got.distinct()) == 2 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, cloud.Close()) // the broker is down
	for _, e := range []string{"e3", "e4", "e5"} {
		require.NoError(t, q.Enqueue(topic, []byte(e), 1))
		want = append(want, e)
	}
	require.Eventually(t, func() bool { return !conn.Connected() }, 10*time.Second, 10*time.Millisecond)
	closeCtx, cancelClose := context.WithTimeout(ctx, 5*time.Second)
	require.NoError(t, conn.Close(closeCtx)) // the agent stops...
	cancelClose()
	q, err = iot.OpenQueue(iot.QueueOptions{Dir: qdir}) // ...and starts again
	require.NoError(t, err)
	require.Equal(t, 3, q.Len())
	for _, e := range []string{"e6", "e7"} {
		require.NoError(t, q.Enqueue(topic, []byte(e), 1))
		want = append(want, e)
	}

	cloud, err = localcloud.Open(opts) // the broker is back
	require.NoError(t, err)
	require.NoError(t, cloud.Start(ctx))
	require.NoError(t, cloud.Observe("edgecam/+/events/#", got.add))
	conn = dial(q)
	defer conn.Close(context.Background())
	require.Eventually(t, func() bool { return len(got.distinct()) == len(want) }, 20*time.Second, 10*time.Millisecond, "got %v", got.distinct())
	require.Equal(t, want, got.distinct(), "every message, in order")
	require.NoError(t, q.WaitEmpty(ctx))
}

// testCA issues a server certificate valid from notBefore, for 127.0.0.1.
func testServerCert(t *testing.T, notBefore time.Time) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "endpoint"}, NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// tlsServer accepts TLS connections with cert and counts the handshakes tried.
func tlsServer(t *testing.T, cert tls.Certificate) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
			go func() { _ = tc.Handshake(); tc.Close() }()
		}
	}()
	return ln.Addr().String(), &accepted
}

// TestDialExplainsClockProblems: a server certificate "not yet valid" is reported as the
// device's clock being wrong, not as an untrusted CA; and no TLS is tried at all while the
// clock reads a time before this build.
func TestDialExplainsClockProblems(t *testing.T) {
	t.Run("server certificate not yet valid", func(t *testing.T) {
		cert, pool := testServerCert(t, time.Now().Add(2*time.Hour))
		addr, _ := tlsServer(t, cert)
		_, err := iot.Dial(context.Background(), iot.Options{Endpoint: addr, RootCAs: pool, ClientID: "x", ConnectTimeout: 2 * time.Second})
		var ce *iot.ConnectError
		require.ErrorAs(t, err, &ce)
		require.Contains(t, ce.Hint, "not valid yet")
		require.Contains(t, ce.Hint, "clock is wrong")
		require.NotContains(t, ce.Hint, "not trusted")
		require.True(t, ce.Temporary, "NTP will fix it")
	})
	t.Run("clock before this build", func(t *testing.T) {
		cert, pool := testServerCert(t, time.Now().Add(-time.Hour))
		addr, accepted := tlsServer(t, cert)
		_, err := iot.Dial(context.Background(), iot.Options{Endpoint: addr, RootCAs: pool, ClientID: "x", ConnectTimeout: 2 * time.Second,
			Clock: clock.NewFake(time.Unix(0, 0))})
		var ce *iot.ConnectError
		require.ErrorAs(t, err, &ce)
		require.ErrorContains(t, err, "the clock is wrong")
		require.ErrorContains(t, err, "1970-01-01")
		require.True(t, ce.Temporary)
		require.Zero(t, accepted.Load(), "no connection while the clock cannot be right")
	})
}
