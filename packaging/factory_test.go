package packaging_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pki is a test CA and a claim certificate it signed, written as PEM files.
type pki struct {
	ca, cert, key, otherKey string
}

func writePEM(t *testing.T, path, typ string, der []byte) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgecam test root CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	claimKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	claimTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "edgecam claim batch 7"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	claimDER, err := x509.CreateCertificate(rand.Reader, claimTmpl, caTmpl, &claimKey.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(claimKey)
	require.NoError(t, err)
	otherDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	require.NoError(t, err)
	return pki{
		ca:       writePEM(t, filepath.Join(dir, "AmazonRootCA1.pem"), "CERTIFICATE", caDER),
		cert:     writePEM(t, filepath.Join(dir, "claim.pem"), "CERTIFICATE", claimDER),
		key:      writePEM(t, filepath.Join(dir, "claim.key"), "PRIVATE KEY", keyDER),
		otherKey: writePEM(t, filepath.Join(dir, "other.key"), "PRIVATE KEY", otherDER),
	}
}

const (
	testIoT   = "a1b2c3example-ats.iot.eu-west-1.amazonaws.com"
	testCreds = "c2example.credentials.iot.eu-west-1.amazonaws.com"
)

// factoryArgs returns a complete argument list, with overrides (an empty value drops the
// flag).
func factoryArgs(p pki, root, deb string, override map[string]string) []string {
	base := [][2]string{
		{"--root", root}, {"--deb", deb}, {"--claim-cert", p.cert}, {"--claim-key", p.key},
		{"--root-ca", p.ca}, {"--iot-endpoint", testIoT}, {"--credentials-endpoint", testCreds},
	}
	var args []string
	seen := map[string]bool{}
	for _, kv := range base {
		v := kv[1]
		if o, ok := override[kv[0]]; ok {
			v = o
		}
		seen[kv[0]] = true
		if v != "" {
			args = append(args, kv[0], v)
		}
	}
	for k, v := range override {
		if !seen[k] && v != "" {
			args = append(args, k, v)
		}
	}
	return args
}

// TestFactoryRejectsBadInput: every bad argument is refused before anything is touched,
// with exit status 2 and a message that names the flag and says what to give.
func TestFactoryRejectsBadInput(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed (scripts/install-deps.sh)")
	}
	p := newPKI(t)
	root := t.TempDir()
	deb := filepath.Join(t.TempDir(), "edgecam_1.0_arm64.deb")
	require.NoError(t, os.WriteFile(deb, []byte("not yet"), 0o644))
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o644))

	tests := []struct {
		name     string
		override map[string]string
		want     string
	}{
		{"no root", map[string]string{"--root": ""}, "--root DIR or --image FILE.img"},
		{"root and image", map[string]string{"--image": "x.img"}, "give --root or --image, not both"},
		{"no package", map[string]string{"--deb": ""}, "--deb FILE.deb or --debs DIR"},
		{"no claim key", map[string]string{"--claim-key": ""}, "--claim-key is required"},
		{"no credentials endpoint", map[string]string{"--credentials-endpoint": ""}, "--credentials-endpoint is required"},
		{"endpoint with scheme", map[string]string{"--iot-endpoint": "https://" + testIoT}, "--iot-endpoint must be host[:port] without a scheme"},
		{"region not in endpoint", map[string]string{"--iot-endpoint": "localhost:8883"}, "give --region"},
		{"bad region", map[string]string{"--region": "Europe"}, "--region must be an AWS region"},
		{"missing cert file", map[string]string{"--claim-cert": "/nonexistent/claim.pem"}, "no file at /nonexistent/claim.pem"},
		{"CA not PEM", map[string]string{"--root-ca": notPEM}, "is not a PEM certificate (AWS's is AmazonRootCA1.pem)"},
		{"key of another cert", map[string]string{"--claim-key": p.otherKey}, "is not the key of --claim-cert"},
		{"cert given as key", map[string]string{"--claim-key": p.cert}, "is not a PEM private key"},
		{"unknown flag", map[string]string{"--colour": "blue"}, "unknown option --colour"},
		{"flag without value", nil, "--template needs a value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := factoryArgs(p, root, deb, tt.override)
			if tt.override == nil {
				args = append(args, "--template")
			}
			out, err := exec.Command("image/factory.sh", args...).CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s", out)
			require.Equal(t, 2, ee.ExitCode(), "%s", out)
			require.Contains(t, string(out), tt.want)
			entries, err := os.ReadDir(root)
			require.NoError(t, err)
			require.Empty(t, entries, "nothing may be written on bad input")
		})
	}
}
