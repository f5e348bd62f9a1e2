package localcloud

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/fxamacker/cbor/v2"
	"golang.org/x/net/http/httpguts"
)

// Fuzz targets for what localcloud reads from its clients: SigV4 Authorization headers and
// presigned URLs, signaling client messages, fleet provisioning requests (JSON and CBOR) and
// PutMedia bodies. Seeds (real kvssink and SDK requests) are in testdata/fuzz.

var (
	fuzzNow   = time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	fuzzCreds = aws.Credentials{AccessKeyID: "ASIAFUZZEXAMPLE", SecretAccessKey: "fuzz-secret", SessionToken: "fuzz-token"}
)

func fuzzVerifier() *sigV4Verifier {
	return newSigV4Verifier("us-east-1", func() time.Time { return fuzzNow }, func(id string) (aws.Credentials, string, bool) {
		if id == fuzzCreds.AccessKeyID {
			return fuzzCreds, "fuzz", true
		}
		return aws.Credentials{}, "", false
	})
}

// checkAuthError: a refusal is AWS's 403 with a type and a message.
func checkAuthError(t *testing.T, e *awsError) {
	t.Helper()
	if e.Status != http.StatusForbidden || e.Type == "" || e.Message == "" {
		t.Fatalf("refusal without a 403, type or message: %#v", e)
	}
}

// asReceived is the request as a server reads it off the wire.
func asReceived(r *http.Request) (*http.Request, bool) {
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		return nil, false
	}
	got, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		return nil, false
	}
	return got, true
}

// FuzzSigV4Header: a request signed by aws-sdk-go-v2's signer verifies, whatever its path,
// query, header value and body (round trip); any other Authorization header is refused with
// AWS's 403, never accepted with a wrong signature.
func FuzzSigV4Header(f *testing.F) {
	f.Add("/describeStream", "", "camera-1", []byte(`{"StreamName":"camera-1"}`), "")
	f.Add("/putMedia", "a=b&c=", "x", []byte{}, "AWS4-HMAC-SHA256 Credential=ASIAFUZZEXAMPLE/20261202/us-east-1/kinesisvideo/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	v := fuzzVerifier()
	otherSecret := newSigV4Verifier("us-east-1", func() time.Time { return fuzzNow }, func(id string) (aws.Credentials, string, bool) {
		c := fuzzCreds
		c.SecretAccessKey = "another-secret"
		return c, "fuzz", id == fuzzCreds.AccessKeyID
	})
	signer := v4.NewSigner()
	f.Fuzz(func(t *testing.T, path, query, header string, body []byte, auth string) {
		u, err := url.Parse("http://kinesisvideo.us-east-1.amazonaws.com:443" + "/" + strings.TrimPrefix(path, "/"))
		if err != nil || u.Host != "kinesisvideo.us-east-1.amazonaws.com:443" || u.RawQuery != "" || u.Fragment != "" {
			return
		}
		if _, err := url.ParseQuery(query); err != nil {
			return // a client's SDK encodes its query: a broken one is not signed by it
		}
		u.RawQuery = query
		if !httpguts.ValidHeaderFieldValue(header) {
			return
		}
		r, err := http.NewRequest(http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		r.Header.Set("x-amzn-stream-name", header)
		sum := sha256.Sum256(body)
		if err := signer.SignHTTP(context.Background(), fuzzCreds, r, hex.EncodeToString(sum[:]), sigV4Service, "us-east-1", fuzzNow.Add(-time.Minute)); err != nil {
			t.Fatalf("sign: %v", err)
		}
		r.Body = nopBody(body)
		got, ok := asReceived(r)
		if !ok {
			return
		}
		if _, aerr := v.verifyHeader(got, body); aerr != nil {
			t.Fatalf("a request signed by aws-sdk-go-v2 was refused: %v\nrequest: %s %s\nheaders: %v", aerr, got.Method, got.URL.RequestURI(), got.Header)
		}
		if auth == "" || auth == r.Header.Get("Authorization") || !httpguts.ValidHeaderFieldValue(auth) {
			return
		}
		got.Header.Set("Authorization", auth)
		principal, aerr := v.verifyHeader(got, body)
		if aerr != nil {
			checkAuthError(t, aerr)
			return
		}
		// Accepted: only because it was signed with the secret (another secret refuses it).
		if principal != "fuzz" {
			t.Fatalf("Authorization %q accepted for %q", auth, principal)
		}
		if _, aerr := otherSecret.verifyHeader(got, body); aerr == nil {
			t.Fatalf("Authorization %q accepted without the secret", auth)
		}
	})
}

type bodyReader struct{ *bytes.Reader }

func (bodyReader) Close() error { return nil }

func nopBody(b []byte) bodyReader { return bodyReader{bytes.NewReader(b)} }

// FuzzSigV4Presign: any query on the signaling WebSocket URL is refused with AWS's 403 unless
// it carries the right signature, and an X-Amz-Expires out of 1…604800 is refused as such;
// a URL presigned by aws-sdk-go-v2 with the fuzzed client ID verifies.
func FuzzSigV4Presign(f *testing.F) {
	f.Add("X-Amz-ChannelARN=arn%3Aaws%3Akinesisvideo%3Aus-east-1%3A123456789012%3Achannel%2Fcam%2F1&X-Amz-Expires=99999999999", "viewer-1")
	v := fuzzVerifier()
	signer := v4.NewSigner()
	f.Fuzz(func(t *testing.T, rawQuery, clientID string) {
		// Round trip: presigned by the SDK as AWS's viewers do.
		if clientID != "" {
			q := url.Values{"X-Amz-ChannelARN": {"arn:aws:kinesisvideo:us-east-1:123456789012:channel/cam/1"}, "X-Amz-ClientId": {clientID}}
			req, err := http.NewRequest(http.MethodGet, "http://m-1234.kinesisvideo.us-east-1.amazonaws.com:443/?"+q.Encode(), nil)
			if err != nil {
				t.Fatal(err)
			}
			signed, _, err := signer.PresignHTTP(context.Background(), fuzzCreds, req, emptySHA256, sigV4Service, "us-east-1", fuzzNow.Add(-time.Minute),
				func(o *v4.SignerOptions) { o.DisableHeaderHoisting = true })
			if err != nil {
				t.Fatal(err)
			}
			su, err := url.Parse(signed)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := asReceived(&http.Request{Method: http.MethodGet, URL: su, Host: su.Host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1})
			if ok {
				if _, aerr := v.verifyPresign(got); aerr != nil {
					t.Fatalf("a URL presigned by aws-sdk-go-v2 was refused: %v\n%s", aerr, signed)
				}
			}
		}

		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/", RawQuery: rawQuery}, Host: "m-1234.kinesisvideo.us-east-1.amazonaws.com", Header: http.Header{}}
		principal, aerr := v.verifyPresign(r)
		if aerr == nil {
			if principal != "fuzz" {
				t.Fatalf("query %q accepted for %q", rawQuery, principal)
			}
			return
		}
		checkAuthError(t, aerr)
		// An expiry out of range is refused as such once the fields before it are right.
		q := r.URL.Query()
		exp := q.Get("X-Amz-Expires")
		n, err := strconv.ParseInt(exp, 10, 64)
		outOfRange := exp != "" && (err != nil || n <= 0 || n > 604800)
		_, scopeOK := parseScope(q.Get("X-Amz-Credential"))
		_, dateErr := time.Parse(amzDateFormat, q.Get("X-Amz-Date"))
		if outOfRange && scopeOK && dateErr == nil && q.Get("X-Amz-Algorithm") == sigV4Algorithm &&
			q.Get("X-Amz-SignedHeaders") != "" && q.Get("X-Amz-Signature") != "" && !strings.Contains(aerr.Message, "X-Amz-Expires") {
			t.Fatalf("X-Amz-Expires %q refused for another reason: %v", exp, aerr)
		}
	})
}

// FuzzSignalingClientMessage: whatever a WebSocket client sends is accepted only when it is
// one JSON object with a known action, a base64 payload of at most 10 KB and a valid
// recipient; a refusal is a 400 with a description; what is accepted survives a round trip.
func FuzzSignalingClientMessage(f *testing.F) {
	f.Add([]byte(`{"action":"SDP_ANSWER","recipientClientId":"viewer-1","messagePayload":"` + base64.StdEncoding.EncodeToString([]byte(`{"type":"answer","sdp":"v=0\r\n"}`)) + `"}`))
	f.Add([]byte(`{"Action":"ICE_CANDIDATE","RecipientClientId":"v","MessagePayload":"eyJ9","CorrelationId":"1"} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, corr, fail := parseClientMessage(data)
		if fail != nil {
			if fail.StatusCode != "400" || fail.ErrorType == "" || fail.Description == "" {
				t.Fatalf("refusal without a status, type or description: %#v", fail)
			}
			if corr != "" && (m.CorrelationID == nil || *m.CorrelationID != corr) {
				t.Fatalf("correlation ID %q not from the message", corr)
			}
			var sr serviceMessage
			if err := json.Unmarshal(statusResponse(corr, fail), &sr); err != nil || sr.StatusResponse == nil || sr.StatusResponse.CorrelationID != corr {
				t.Fatalf("STATUS_RESPONSE does not read back: %v", err)
			}
			return
		}
		switch *m.Action {
		case "SDP_OFFER", "SDP_ANSWER", "ICE_CANDIDATE":
		default:
			t.Fatalf("accepted action %q", *m.Action)
		}
		p := *m.MessagePayload
		if p == "" || len(p) > maxSignalingPayload {
			t.Fatalf("accepted a payload of %d bytes", len(p))
		}
		if _, err := base64.StdEncoding.DecodeString(p); err != nil {
			t.Fatalf("accepted a payload that is not base64: %v", err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, corr2, fail2 := parseClientMessage(b)
		if fail2 != nil || corr2 != corr || *m2.MessagePayload != p || *m2.Action != *m.Action {
			t.Fatalf("accepted message did not survive a round trip: %s (%v)", b, fail2)
		}
	})
}

// fleetTokenPlaceholder in a fuzzed RegisterThing request is replaced by a valid ownership
// token (of the same length, so that CBOR lengths stay right).
var fleetTokenPlaceholder = strings.Repeat("@", 256)

// FuzzFleetRequest: any JSON or CBOR payload on a fleet provisioning topic gets exactly one
// answer, on …/accepted or …/rejected, in the request's format; a rejection carries a
// numeric statusCode and an errorCode; an accepted certificate matches its ID.
func FuzzFleetRequest(f *testing.F) {
	f.Add(uint8(0), []byte(`{"certificateSigningRequest":"-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n"}`))
	f.Add(uint8(3), []byte{0xa1, 0x61, 0x61, 0x01})
	c, err := Open(Options{Dir: f.TempDir(), AllowSerials: []string{serial}})
	if err != nil {
		f.Fatal(err)
	}
	fr := c.fleet
	certID := ""
	for id := range fr.reg.Certs {
		certID = id // the claim certificate stands in for a created one
		break
	}
	topics := []string{
		topicCreateFromCSR + "json", topicCreateFromCSR + "cbor",
		topicTemplates + DefaultTemplate + "/provision/json", topicTemplates + DefaultTemplate + "/provision/cbor",
		topicTemplates + "other/provision/json", topicCreateFromCSR + "xml",
	}
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		topic := topics[int(which)%len(topics)]
		format := topic[strings.LastIndexByte(topic, '/')+1:]
		tok := strings.Repeat("T", 256)
		fr.mu.Lock()
		fr.tokens[tok] = ownership{certID: certID, expires: time.Now().Add(time.Hour)}
		fr.mu.Unlock()
		payload = bytes.ReplaceAll(payload, []byte(fleetTokenPlaceholder), []byte(tok))

		reply, answer, ok := fr.handle(fleetRequest{Topic: topic, Payload: payload, ClientID: serial, ClaimCertID: certID})
		if format != "json" && format != "cbor" {
			if ok {
				t.Fatalf("answered a request on %s", topic)
			}
			return
		}
		if !ok {
			t.Fatalf("no answer on %s", topic)
		}
		decode := json.Unmarshal
		if format == "cbor" {
			decode = cbor.Unmarshal
		}
		switch reply {
		case topic + "/rejected":
			var rej map[string]any
			if err := decode(answer, &rej); err != nil {
				t.Fatalf("rejection does not read back as %s: %v", format, err)
			}
			var r rejection
			if err := decode(answer, &r); err != nil || r.StatusCode < 400 || r.ErrorCode == "" || r.ErrorMessage == "" {
				t.Fatalf("rejection without statusCode, errorCode or errorMessage: %v (%v)", rej, err)
			}
		case topic + "/accepted":
			if strings.Contains(topic, "/provision/") {
				var r registerResponse
				if err := decode(answer, &r); err != nil || r.ThingName == "" || r.DeviceConfiguration == nil {
					t.Fatalf("RegisterThing answer without thingName or deviceConfiguration: %q (%v)", answer, err)
				}
				return
			}
			var r createResponse
			if err := decode(answer, &r); err != nil || r.CertificateOwnershipToken == "" {
				t.Fatalf("certificate answer without a token: %q (%v)", answer, err)
			}
			if id, err := certificateIDFromPEM([]byte(r.CertificatePEM)); err != nil || id != r.CertificateID {
				t.Fatalf("certificateId %s does not match the certificate (%v)", r.CertificateID, err)
			}
		default:
			t.Fatalf("answer on %s for a request on %s", reply, topic)
		}
	})
}

// duplexWriter is a ResponseWriter that supports full duplex, as net/http's does; PutMedia's
// acknowledgements are collected. The idle loop writes from its own goroutine.
type duplexWriter struct {
	mu     sync.Mutex
	header http.Header
	status int
	body   bytes.Buffer
}

func (d *duplexWriter) Header() http.Header { return d.header }
func (d *duplexWriter) WriteHeader(code int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status == 0 {
		d.status = code
	}
}
func (d *duplexWriter) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status == 0 {
		d.status = http.StatusOK
	}
	return d.body.Write(b)
}
func (d *duplexWriter) Flush()                  {}
func (d *duplexWriter) EnableFullDuplex() error { return nil }

var putMediaErrorIDs = map[int]bool{
	ackErrRead: true, ackErrTooBig: true, ackErrTooLong: true, ackErrTimecodeBack: true, ackErrInvalidMKV: true, ackErrProducerTime: true,
	ackErrStreamDeleted: true, ackErrTrackMismatch: true, ackErrInternal: true, ackErrPersistFailure: true,
}

// FuzzPutMedia: any PutMedia body (and producer start timestamp) goes through the real
// handler (signature check, stream lookup, the MKV demuxer, fragment checks and storage)
// and gets newline-separated JSON acknowledgements of known types in order; an ERROR, if
// any, is the last; every PERSISTED fragment has a number. Hostile sizes cost no more than
// the limits.
func FuzzPutMedia(f *testing.F) {
	f.Add([]byte{0x1A, 0x45, 0xDF, 0xA3, 0x80}, "", false)
	dir := f.TempDir()
	c, err := Open(Options{Dir: dir, AllowSerials: []string{serial}})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(func() { cancel(); c.Close() })
	if err := c.Start(ctx); err != nil {
		f.Fatal(err)
	}
	svc := c.kvs.streams
	const stream = "fuzz-stream"
	if _, err := svc.streams.create(kvsStream{Name: stream, DataRetentionInHours: 1}, time.Now(), true); err != nil {
		f.Fatal(err)
	}
	svc.media.revive(stream)
	ic := c.IssueCredentials(serial)
	creds := aws.Credentials{AccessKeyID: ic.AccessKeyID, SecretAccessKey: ic.SecretAccessKey, SessionToken: ic.SessionToken}

	f.Fuzz(func(t *testing.T, body []byte, start string, relative bool) {
		// Each input starts from the same state: no header or partial fragment from the last.
		svc.mu.Lock()
		delete(svc.headers, stream)
		delete(svc.partials, stream)
		svc.mu.Unlock()

		if start == "" {
			start = strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64)
		}
		if !httpguts.ValidHeaderFieldValue(start) {
			return
		}
		tcType := "ABSOLUTE"
		if relative {
			tcType = "RELATIVE"
		}
		r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/putMedia", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("User-Agent", "AWS-SDK-KVS-CPP-CLIENT/3.6.0")
		r.Header.Set("Connection", "keep-alive")
		r.Header.Set("x-amzn-stream-name", stream)
		r.Header.Set("x-amzn-producer-start-timestamp", start)
		r.Header.Set("x-amzn-fragment-timecode-type", tcType)
		r.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
		kvssinkSign(r, creds, c.Region(), []string{"connection", "host", "transfer-encoding", "user-agent", "x-amz-date", "x-amz-security-token",
			"x-amzn-fragment-acknowledgment-required", "x-amzn-fragment-timecode-type", "x-amzn-producer-start-timestamp", "x-amzn-stream-name"}, nil, time.Now())
		w := &duplexWriter{header: http.Header{}}
		svc.putMedia(w, r)

		w.mu.Lock()
		status, out := w.status, w.body.Bytes()
		w.mu.Unlock()
		if status == 0 {
			if len(body) > 0 {
				t.Fatalf("no answer to a body of %d bytes", len(body))
			}
			return // the connection ended before any data: nothing to answer
		}
		if status != http.StatusOK {
			if status < 400 {
				t.Fatalf("status %d", status)
			}
			var e map[string]string
			if err := json.Unmarshal(out, &e); err != nil || e["message"]+e["Message"] == "" {
				t.Fatalf("refusal %d without a message: %q", status, out)
			}
			return
		}
		lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
		for i, line := range lines {
			if len(line) == 0 {
				continue
			}
			var a ack
			if err := json.Unmarshal(line, &a); err != nil {
				t.Fatalf("acknowledgement %q is not JSON: %v", line, err)
			}
			switch a.EventType {
			case "BUFFERING", "RECEIVED", "IDLE":
			case "PERSISTED":
				if a.FragmentNumber == "" || a.FragmentTimecode == nil {
					t.Fatalf("PERSISTED without a fragment number or timecode: %s", line)
				}
			case "ERROR":
				if !putMediaErrorIDs[a.ErrorID] {
					t.Fatalf("ERROR with an unknown ErrorId: %s", line)
				}
				if i != len(lines)-1 {
					t.Fatalf("acknowledgements after an ERROR: %s", out)
				}
			default:
				t.Fatalf("unknown acknowledgement %s", line)
			}
		}
	})
}
