package provisioning

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecam/edgecam/iot"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

func TestProvisionMethods(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		keyType string
		wantKey func(any) bool
	}{
		{"CSR with ECDSA P-256 (default)", MethodCSR, KeyECDSAP256, func(k any) bool { _, ok := k.(*ecdsa.PrivateKey); return ok }},
		{"CSR with RSA 2048", MethodCSR, KeyRSA2048, func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 2048 }},
		{"CreateKeysAndCertificate", MethodKeys, "", func(k any) bool { _, ok := k.(*rsa.PrivateKey); return ok }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cloud := startCloud(t, localcloud.Options{})
			store, err := OpenStore(t.TempDir())
			require.NoError(t, err)
			opts := fleetOptions(t, cloud)
			opts.Method, opts.KeyType = tt.method, tt.keyType
			opts.Parameters = map[string]string{"Location": "lab"}

			id, err := Provision(testCtx(t), store, opts)
			require.NoError(t, err)
			require.Equal(t, testSerial, id.ThingName)
			require.Equal(t, testSerial, id.DeviceConfiguration["kvsStreamName"])

			// The cloud registered the thing with the certificate, now active.
			thing, ok := cloud.Thing(testSerial)
			require.True(t, ok)
			require.Equal(t, []string{id.CertificateID}, thing.Certificates)
			require.Equal(t, "lab", thing.Attributes["Location"])
			rec, ok := cloud.Certificate(id.CertificateID)
			require.True(t, ok)
			require.Equal(t, localcloud.StatusActive, rec.Status)

			// What the store kept loads again, with a 0600 key of the right type.
			loaded, err := store.Load()
			require.NoError(t, err)
			require.Equal(t, id.CertificateID, loaded.CertificateID)
			st, err := os.Stat(store.KeyPath(loaded))
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
			key, err := readKey(store.KeyPath(loaded))
			require.NoError(t, err)
			require.True(t, tt.wantKey(key), "key type %T", key)
			require.FileExists(t, store.CertPath())
			require.FileExists(t, store.CAPath())

			// The new certificate works: connect as the thing.
			cert, err := store.TLSCertificate(loaded)
			require.NoError(t, err)
			conn, err := iot.Dial(testCtx(t), iot.Options{Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), Certificate: cert, ClientID: id.ThingName, ConnectTimeout: 5 * time.Second})
			require.NoError(t, err)
			require.NoError(t, conn.Publish(testCtx(t), "edgecam/"+id.ThingName+"/status", []byte(`{}`), 1))
			require.NoError(t, conn.Close(testCtx(t)))
		})
	}
}

func TestProvisionRejections(t *testing.T) {
	tests := []struct {
		name     string
		adjust   func(*FleetOptions)
		op       string
		status   int
		code     string
		hintPart string
	}{
		{"serial not in the device list", func(o *FleetOptions) { o.Serial = "BCM2835-00000000deadbeef" }, "RegisterThing", 403, "AccessDenied", "refused serial BCM2835-00000000deadbeef: check that it is in the manufacturer's device list"},
		{"unknown template", func(o *FleetOptions) { o.Template = "no-such-template" }, "RegisterThing", 404, "ResourceNotFound", `template "no-such-template" exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cloud := startCloud(t, localcloud.Options{})
			store, err := OpenStore(t.TempDir())
			require.NoError(t, err)
			opts := fleetOptions(t, cloud)
			opts.Attempts = 3
			var attempts atomic.Int32
			opts.Backoff = func(int) time.Duration { attempts.Add(1); return time.Millisecond }
			tt.adjust(&opts)
			_, err = Provision(testCtx(t), store, opts)
			var rej *RejectedError
			require.ErrorAs(t, err, &rej)
			require.Equal(t, tt.op, rej.Operation)
			require.Equal(t, tt.status, rej.StatusCode)
			require.Equal(t, tt.code, rej.ErrorCode)
			require.NotEmpty(t, rej.ErrorMessage)
			require.Contains(t, err.Error(), tt.hintPart)
			require.Contains(t, err.Error(), "statusCode")
			require.Zero(t, attempts.Load(), "a rejection is not retried")
			_, err = store.Load()
			require.ErrorIs(t, err, ErrNoIdentity, "nothing committed")
		})
	}
}

func TestProvisionRetriesExpiredToken(t *testing.T) {
	cloud := startCloud(t, localcloud.Options{TokenTTL: time.Nanosecond})
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	opts := fleetOptions(t, cloud)
	opts.Attempts = 3
	var waits atomic.Int32
	opts.Backoff = func(int) time.Duration { waits.Add(1); return time.Millisecond }
	_, err = Provision(testCtx(t), store, opts)
	require.ErrorContains(t, err, "after 3 attempts")
	require.ErrorContains(t, err, "InvalidCertificateOwnershipToken")
	require.Equal(t, int32(2), waits.Load())
}

func TestProvisionUnreachableBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	cloud := startCloud(t, localcloud.Options{})
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	opts := fleetOptions(t, cloud)
	opts.Endpoint = addr
	opts.Timeout = time.Second
	opts.Attempts = 2
	start := time.Now()
	_, err = Provision(testCtx(t), store, opts)
	require.ErrorContains(t, err, "after 2 attempts")
	require.ErrorContains(t, err, "cannot reach the endpoint")
	var ce *iot.ConnectError
	require.ErrorAs(t, err, &ce)
	require.Less(t, time.Since(start), 20*time.Second)
}

func TestProvisionUntrustedServer(t *testing.T) {
	cloud := startCloud(t, localcloud.Options{})
	other := startCloud(t, localcloud.Options{}) // a different CA
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	opts := fleetOptions(t, cloud)
	opts.RootCAs = other.CAPool()
	opts.Attempts = 3
	_, err = Provision(testCtx(t), store, opts)
	require.ErrorContains(t, err, "check iot.ca_cert")
	require.NotContains(t, err.Error(), "attempts", "a certificate problem is not retried")
}

func TestProvisionReusesPendingKey(t *testing.T) {
	// A crash after the key was made but before the certificate arrived: the next run
	// provisions again with the same key.
	cloud := startCloud(t, localcloud.Options{})
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	_, name, err := store.PendingKey(KeyECDSAP256)
	require.NoError(t, err)
	id, err := Provision(testCtx(t), store, fleetOptions(t, cloud))
	require.NoError(t, err)
	require.Equal(t, name, id.KeyFile)
	// The certificate was issued for that key.
	block, _ := pem.Decode([]byte(id.CertificatePEM))
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	key, err := readKey(filepath.Join(store.Dir(), name))
	require.NoError(t, err)
	require.True(t, key.Public().(*ecdsa.PublicKey).Equal(cert.PublicKey))
}

func TestEnsureIdentityIsANoOpOnceProvisioned(t *testing.T) {
	cloud := startCloud(t, localcloud.Options{})
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	opts := fleetOptions(t, cloud)
	first, fresh, err := EnsureIdentity(testCtx(t), store, func() (FleetOptions, error) { return opts, nil })
	require.NoError(t, err)
	require.True(t, fresh)
	// Once provisioned, the fleet options are not even built (the claim may be gone).
	second, fresh, err := EnsureIdentity(testCtx(t), store, func() (FleetOptions, error) {
		return FleetOptions{}, errors.New("asked for fleet options when already provisioned")
	})
	require.NoError(t, err)
	require.False(t, fresh)
	require.Equal(t, first.CertificateID, second.CertificateID)
}

func TestDeviceCertificatePolicy(t *testing.T) {
	cloud := startCloud(t, localcloud.Options{})
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	id, err := Provision(testCtx(t), store, fleetOptions(t, cloud))
	require.NoError(t, err)
	cert, err := store.TLSCertificate(id)
	require.NoError(t, err)

	// Another client ID than the thing name is refused, as AWS policies usually do.
	_, err = iot.Dial(testCtx(t), iot.Options{Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), Certificate: cert, ClientID: "someone-else", ConnectTimeout: 3 * time.Second})
	require.ErrorContains(t, err, "refused the session")

	conn, err := iot.Dial(testCtx(t), iot.Options{Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), Certificate: cert, ClientID: id.ThingName, ConnectTimeout: 3 * time.Second})
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.NoError(t, conn.Subscribe(testCtx(t), "edgecam/"+id.ThingName+"/#"))
	err = conn.Subscribe(testCtx(t), "edgecam/other-thing/#")
	require.ErrorContains(t, err, "refused")
	require.False(t, errors.Is(err, context.DeadlineExceeded))
}
