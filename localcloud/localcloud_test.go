package localcloud

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/iot"
	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"
)

const serial = "BCM2835-00000000b211cf11"

func start(t *testing.T, opts Options) *Cloud {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.AllowSerials == nil {
		opts.AllowSerials = []string{serial}
	}
	c, err := Open(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); c.Close() })
	require.NoError(t, c.Start(ctx))
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// claimConn connects with the claim certificate and collects the replies to topics.
func claimConn(t *testing.T, c *Cloud, clientID string, topics ...string) (*iot.Conn, chan iot.Message) {
	t.Helper()
	claim, err := tls.LoadX509KeyPair(c.Paths().ClaimCert, c.Paths().ClaimKey)
	require.NoError(t, err)
	conn, err := iot.Dial(ctxT(t), iot.Options{Endpoint: c.MQTTEndpoint(), RootCAs: c.CAPool(), Certificate: claim, ClientID: clientID, ConnectTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	got := make(chan iot.Message, 16)
	for _, topic := range topics {
		conn.Handle(topic, func(m iot.Message) { got <- m })
	}
	if len(topics) > 0 {
		require.NoError(t, conn.Subscribe(ctxT(t), topics...))
	}
	return conn, got
}

func next(t *testing.T, ch chan iot.Message) iot.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5 s")
		return iot.Message{}
	}
}

func csrPEM(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestOpenCreatesFilesOnce(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, AllowSerials: []string{"A-1"}})
	require.NoError(t, err)
	p := c.Paths()
	ca1, err := os.ReadFile(p.CA)
	require.NoError(t, err)
	for path, perm := range map[string]os.FileMode{p.CAKey: 0o600, p.ClaimKey: 0o600, p.CA: 0o644, p.ClaimCert: 0o644} {
		st, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, perm, st.Mode().Perm(), path)
	}
	allow, err := os.ReadFile(p.AllowList)
	require.NoError(t, err)
	require.Contains(t, string(allow), "A-1\n")

	again, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	ca2, err := os.ReadFile(again.Paths().CA)
	require.NoError(t, err)
	require.Equal(t, ca1, ca2, "the CA is created once")
	require.NoError(t, again.Allow("B-2"))
	require.True(t, again.allowed()["B-2"])
	require.True(t, again.allowed()["A-1"])
}

func TestRepliesGoOnlyToTheRequester(t *testing.T) {
	c := start(t, Options{})
	const topic = "$aws/certificates/create-from-csr/json"
	requester, mine := claimConn(t, c, "device-a", topic+"/accepted", topic+"/rejected")
	_, theirs := claimConn(t, c, "device-b", topic+"/accepted", topic+"/rejected")

	payload, _ := json.Marshal(map[string]string{"certificateSigningRequest": csrPEM(t)})
	require.NoError(t, requester.Publish(ctxT(t), topic, payload, 1))
	m := next(t, mine)
	require.Equal(t, topic+"/accepted", m.Topic)
	var ans map[string]any
	require.NoError(t, json.Unmarshal(m.Payload, &ans))
	require.Len(t, ans["certificateId"], 64)
	require.Contains(t, ans["certificatePem"], "BEGIN CERTIFICATE")
	require.NotEmpty(t, ans["certificateOwnershipToken"])
	require.NotContains(t, ans, "privateKey")

	select {
	case m := <-theirs:
		t.Fatalf("another client received %s", m.Topic)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestFleetWireFormats(t *testing.T) {
	c := start(t, Options{})
	csr := csrPEM(t)
	tests := []struct {
		name     string
		format   string
		topic    string
		request  any
		accepted bool
		check    func(t *testing.T, ans map[string]any)
	}{
		{"CSR in CBOR", "cbor", "$aws/certificates/create-from-csr/cbor", map[string]string{"certificateSigningRequest": csr}, true,
			func(t *testing.T, ans map[string]any) { require.Len(t, ans["certificateId"], 64) }},
		{"keys and certificate", "json", "$aws/certificates/create/json", map[string]string{}, true,
			func(t *testing.T, ans map[string]any) {
				require.True(t, strings.HasPrefix(ans["privateKey"].(string), "-----BEGIN RSA PRIVATE KEY-----"))
			}},
		{"empty CSR", "json", "$aws/certificates/create-from-csr/json", map[string]string{"certificateSigningRequest": ""}, false,
			func(t *testing.T, ans map[string]any) { require.Equal(t, "InvalidCSR", ans["errorCode"]) }},
		{"garbage CSR", "json", "$aws/certificates/create-from-csr/json", map[string]string{"certificateSigningRequest": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, false,
			func(t *testing.T, ans map[string]any) { require.Equal(t, "InvalidCSR", ans["errorCode"]) }},
		{"empty token", "json", "$aws/provisioning-templates/edgecam-fleet/provision/json", map[string]any{"certificateOwnershipToken": "", "parameters": map[string]string{"SerialNumber": serial}}, false,
			func(t *testing.T, ans map[string]any) {
				require.Equal(t, "InvalidCertificateOwnershipToken", ans["errorCode"])
				require.Equal(t, "Certificate ownership token cannot be empty.", ans["errorMessage"])
			}},
		{"unknown token", "json", "$aws/provisioning-templates/edgecam-fleet/provision/json", map[string]any{"certificateOwnershipToken": "bm9wZQ==", "parameters": map[string]string{"SerialNumber": serial}}, false,
			func(t *testing.T, ans map[string]any) {
				require.Equal(t, "InvalidCertificateOwnershipToken", ans["errorCode"])
			}},
		{"not JSON", "json", "$aws/certificates/create-from-csr/json", nil, false,
			func(t *testing.T, ans map[string]any) { require.Equal(t, "InvalidPayload", ans["errorCode"]) }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, got := claimConn(t, c, "wire-"+string(rune('a'+i)), tt.topic+"/accepted", tt.topic+"/rejected")
			var payload []byte
			switch {
			case tt.request == nil:
				payload = []byte("{not json")
			case tt.format == "cbor":
				payload, _ = cbor.Marshal(tt.request)
			default:
				payload, _ = json.Marshal(tt.request)
			}
			require.NoError(t, conn.Publish(ctxT(t), tt.topic, payload, 1))
			m := next(t, got)
			want := tt.topic + "/rejected"
			if tt.accepted {
				want = tt.topic + "/accepted"
			}
			require.Equal(t, want, m.Topic)
			ans := map[string]any{}
			if tt.format == "cbor" {
				require.NoError(t, cbor.Unmarshal(m.Payload, &ans))
			} else {
				require.NoError(t, json.Unmarshal(m.Payload, &ans))
			}
			if !tt.accepted {
				// statusCode is a number, as AWS sends it.
				require.IsType(t, float64(0), ans["statusCode"])
				require.NotEmpty(t, ans["errorMessage"])
			}
			tt.check(t, ans)
		})
	}
}

func TestClaimPolicy(t *testing.T) {
	c := start(t, Options{})
	conn, _ := claimConn(t, c, "policy")
	require.ErrorContains(t, conn.Subscribe(ctxT(t), "edgecam/#"), "refused")
	require.ErrorContains(t, conn.Subscribe(ctxT(t), "$aws/certificates/create-from-csr/json"), "refused", "requests are not readable")
}

func TestUnknownCertificateRefused(t *testing.T) {
	c := start(t, Options{})
	other := start(t, Options{})
	// A certificate from this CA that was never registered.
	certPEM, keyPEM, err := c.ca.clientCert("stranger", false)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	_, err = iot.Dial(ctxT(t), iot.Options{Endpoint: c.MQTTEndpoint(), RootCAs: c.CAPool(), Certificate: cert, ClientID: "stranger", ConnectTimeout: 3 * time.Second})
	require.ErrorContains(t, err, "refused the session")

	// A certificate from another CA fails the TLS handshake.
	claim, err := tls.LoadX509KeyPair(other.Paths().ClaimCert, other.Paths().ClaimKey)
	require.NoError(t, err)
	_, err = iot.Dial(ctxT(t), iot.Options{Endpoint: c.MQTTEndpoint(), RootCAs: c.CAPool(), Certificate: claim, ClientID: "x", ConnectTimeout: 3 * time.Second})
	require.ErrorContains(t, err, "client certificate")
}

func TestRegistryPersists(t *testing.T) {
	dir := t.TempDir()
	c := start(t, Options{Dir: dir})
	f := c.fleet
	req, _ := json.Marshal(map[string]string{"certificateSigningRequest": csrPEM(t)})
	ans, rej := f.createFromCSR(fleetRequest{Payload: req}, "json")
	require.Nil(t, rej)
	created := ans.(createResponse)
	_, rej = f.register(fleetRequest{}, DefaultTemplate, "json")
	require.NotNil(t, rej, "a request without payload is rejected")
	_, payload, ok := f.handle(fleetRequest{Topic: "$aws/provisioning-templates/edgecam-fleet/provision/json",
		Payload: []byte(`{"certificateOwnershipToken":"` + created.CertificateOwnershipToken + `","parameters":{"SerialNumber":"` + serial + `"}}`)})
	require.True(t, ok)
	require.Contains(t, string(payload), `"thingName":"`+serial+`"`)
	require.Contains(t, string(payload), `"deviceConfiguration":{`)
	c.Close()

	reopened, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	thing, ok := reopened.Thing(serial)
	require.True(t, ok, "things survive a restart")
	require.Equal(t, []string{created.CertificateID}, thing.Certificates)
	data, err := os.ReadFile(filepath.Join(dir, "registry.json"))
	require.NoError(t, err)
	require.Contains(t, string(data), StatusActive)
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	return host, n, err
}
