package provisioning

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/clock"
	"github.com/stretchr/testify/require"
)

// credentialsEndpoint serves TLS on 127.0.0.1 with a server certificate valid from
// notBefore (its CA in the returned pool) and counts the connections it accepted.
func credentialsEndpoint(t *testing.T, notBefore time.Time) (string, *x509.CertPool, *atomic.Int32) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "credentials endpoint"},
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
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
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
			go func() { _ = tc.Handshake(); tc.Close() }()
		}
	}()
	return ln.Addr().String(), pool, &accepted
}

// TestCredentialsExplainClockProblems: the credentials provider's certificate "not valid
// yet" is reported as the device's clock being wrong (not as a network or trust problem),
// and the provider is not asked at all while the clock reads a time before this build
// (issue 12, item 10: a Raspberry Pi has no real-time clock).
func TestCredentialsExplainClockProblems(t *testing.T) {
	tests := []struct {
		name      string
		notBefore time.Time   // the endpoint's certificate
		clk       clock.Clock // the device's clock
		want      []string
		connects  bool
	}{
		{"certificate not valid yet by the clock", time.Now().Add(2 * time.Hour), clock.Real,
			[]string{"not valid yet", "clock is wrong"}, true},
		{"clock before this build", time.Now().Add(-time.Hour), clock.NewFake(time.Unix(0, 0)),
			[]string{"not asked", "the clock is wrong", "1970-01-01"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, pool, accepted := credentialsEndpoint(t, tt.notBefore)
			p, err := NewIoTCredentials(CredentialsOptions{Endpoint: addr, RoleAlias: "edgecam", ThingName: "cam-1",
				RootCAs: pool, Timeout: 5 * time.Second, Clock: tt.clk})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = p.Retrieve(ctx)
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			require.NotContains(t, err.Error(), "check credentials.endpoint and the network", "not a network problem")
			if !tt.connects {
				require.Zero(t, accepted.Load(), "no TLS while the clock cannot be right")
			}
		})
	}
}
