package provisioning

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/iot"
)

// Fuzz targets for what reaches provisioning from outside: the fleet provisioning answers
// (MQTT payloads on …/accepted and …/rejected) and the IoT credentials provider's HTTP
// answers. Seeds are AWS's documented answers (../shared/WIRE-FORMATS.md §2, §3), in
// testdata/fuzz.

var fleetOps = []struct{ op, topic string }{
	{"CreateCertificateFromCsr", "$aws/certificates/create-from-csr/json"},
	{"CreateKeysAndCertificate", "$aws/certificates/create/json"},
	{"RegisterThing", "$aws/provisioning-templates/edgecam/provision/json"},
}

// FuzzFleetReply: any payload on …/accepted or …/rejected decodes into an answer or gives an
// error that names the operation; a rejection is a *RejectedError with a hint; what decodes
// survives a round trip through JSON.
func FuzzFleetReply(f *testing.F) {
	f.Add(uint8(0), true, []byte(`{"certificateId":"ab","certificatePem":"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n","certificateOwnershipToken":"t"}`))
	f.Add(uint8(2), false, []byte(`{"statusCode":"400","errorCode":1}`))
	f.Fuzz(func(t *testing.T, which uint8, accepted bool, payload []byte) {
		x := fleetOps[int(which)%len(fleetOps)]
		opts := FleetOptions{Serial: "SN-1", Template: "edgecam"}
		topic := x.topic + "/rejected"
		if accepted {
			topic = x.topic + "/accepted"
		}
		var created createAnswer
		var registered registerAnswer
		var resp any = &created
		if x.op == "RegisterThing" {
			resp = &registered
		}

		// A reply to another request is not an answer.
		if answered, err := decodeReply(x.op, x.topic, iot.Message{Topic: x.topic + "/other", Payload: payload}, resp, opts); answered || err != nil {
			t.Fatalf("a reply on another topic was taken as an answer (%v)", err)
		}
		answered, err := decodeReply(x.op, x.topic, iot.Message{Topic: topic, Payload: payload}, resp, opts)
		if !answered {
			t.Fatal("a reply on the request's own topic was not taken as its answer")
		}
		if !accepted {
			if err == nil {
				t.Fatal("a rejected answer gave no error")
			}
			var rej *RejectedError
			if errors.As(err, &rej) {
				if rej.Hint == "" || rej.Operation != x.op {
					t.Fatalf("rejection without a hint or operation: %#v", rej)
				}
				_ = rej.Temporary()
				// Round trip: AWS's fields survive encoding and decoding.
				again := &RejectedError{}
				b, merr := json.Marshal(rej)
				if merr != nil || json.Unmarshal(b, again) != nil ||
					again.StatusCode != rej.StatusCode || again.ErrorCode != rej.ErrorCode || again.ErrorMessage != rej.ErrorMessage {
					t.Fatalf("rejection did not survive a round trip: %#v → %s → %#v (%v)", rej, b, again, merr)
				}
			}
			if !strings.Contains(err.Error(), x.op) {
				t.Fatalf("error %q does not name the operation", err)
			}
			return
		}
		if err != nil {
			if !strings.Contains(err.Error(), x.op) {
				t.Fatalf("error %q does not name the operation", err)
			}
			return
		}
		// What provisioning does next with an accepted answer must not panic either.
		if x.op == "RegisterThing" {
			var again registerAnswer
			roundTrip(t, &registered, &again)
			if again.ThingName != registered.ThingName || len(again.DeviceConfiguration) != len(registered.DeviceConfiguration) {
				t.Fatalf("register answer did not survive a round trip: %#v → %#v", registered, again)
			}
			return
		}
		var again createAnswer
		roundTrip(t, &created, &again)
		if again != created {
			t.Fatalf("certificate answer did not survive a round trip: %#v → %#v", created, again)
		}
		if id, err := CertificateID([]byte(created.CertificatePEM)); err == nil && len(id) != 64 {
			t.Fatalf("certificate ID %q is not 64 hex digits", id)
		}
	})
}

// FuzzPrivateKey: the privateKey of a CreateKeysAndCertificate answer (PEM: PKCS#1 from AWS,
// PKCS#8 or SEC 1) parses into a signing key or gives an error. Apart from FuzzFleetReply
// because parsing an RSA key checks it by signing (milliseconds each), which would starve
// the answer decoding of executions.
func FuzzPrivateKey(f *testing.F) {
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, keyPEM []byte) {
		k, err := parseKey(keyPEM)
		if err == nil && k == nil {
			t.Fatal("parseKey returned neither a key nor an error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("an error without a message")
		}
	})
}

func roundTrip(t *testing.T, v, into any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %#v: %v", v, err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
}

// answerTransport answers every request with one fixed response: the fuzzer plays the
// credentials provider, behind the real client's request, status and body handling.
type answerTransport struct {
	status int
	header http.Header
	body   []byte
}

func (a answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: a.status, Status: http.StatusText(a.status), Header: a.header,
		Body: io.NopCloser(bytes.NewReader(a.body)), ContentLength: int64(len(a.body)), Request: r,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}, nil
}

// FuzzCredentialsAnswer: any status, error type, Date and body from the credentials provider
// gives complete credentials (200 only) or an error; a refusal is a *CredentialsError that
// keeps the status and says what to check; a huge body is read only up to its limit.
func FuzzCredentialsAnswer(f *testing.F) {
	f.Add(200, "", "", []byte(`{"credentials":{"accessKeyId":"ASIA","secretAccessKey":"s","sessionToken":"t","expiration":"2026-01-01T00:00:00Z"}}`))
	f.Add(403, "ForbiddenException", "Mon, 02 Jan 2006 15:04:05 GMT", []byte(`{"message":"Access Denied"}`))
	f.Fuzz(func(t *testing.T, status int, errorType, date string, body []byte) {
		if status < 100 || status > 999 {
			status = 100 + (status%900+900)%900
		}
		c, err := NewIoTCredentials(CredentialsOptions{Endpoint: "c1.credentials.iot.eu-west-1.amazonaws.com", RoleAlias: "edgecam-role", ThingName: "BCM2835-00000000b211cf11"})
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		if errorType != "" {
			h.Set("x-amzn-ErrorType", errorType)
		}
		if date != "" {
			h.Set("Date", date)
		}
		c.client = &http.Client{Transport: answerTransport{status: status, header: h, body: body}, Timeout: 10 * time.Second}
		cr, err := c.Retrieve(context.Background())
		if err == nil {
			if status != http.StatusOK {
				t.Fatalf("credentials accepted from a %d answer", status)
			}
			if !cr.HasKeys() || !cr.CanExpire || cr.Expires.IsZero() {
				t.Fatalf("incomplete credentials accepted: %#v", cr)
			}
			return
		}
		if status == http.StatusOK {
			if !strings.Contains(err.Error(), "IoT credentials provider") {
				t.Fatalf("error %q does not say who answered", err)
			}
			return
		}
		var ce *CredentialsError
		if !errors.As(err, &ce) {
			t.Fatalf("a %d answer gave %T %v, not a *CredentialsError", status, err, err)
		}
		if ce.Status != status || ce.Hint == "" || ce.ErrorType != h.Get("x-amzn-ErrorType") {
			t.Fatalf("refusal lost its status, type or hint: %#v", ce)
		}
		if len(ce.Message) > 64<<10 {
			t.Fatalf("message of %d bytes from a body limited to 64 KiB", len(ce.Message))
		}
	})
}
