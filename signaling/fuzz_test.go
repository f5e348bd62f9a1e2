package signaling

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// fixedAnswer plays the signaling service's HTTPS endpoint: every request gets one answer.
type fixedAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a fixedAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: a.status, Status: http.StatusText(a.status), Header: a.header.Clone(),
		Body: io.NopCloser(bytes.NewReader(a.body)), ContentLength: int64(len(a.body)), Request: r,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

// FuzzICEServerConfig: whatever GetIceServerConfig answers, ICEServers returns servers or an
// error, never a panic; servers come only from a 200, with a TTL from zero (unknown) to a
// day, so that the master's refresh schedule (90 % of the TTL) cannot overflow; a refusal is
// an *APIError that keeps the status. Seeds (AWS's answers, WIRE-FORMATS §5) in testdata/fuzz.
func FuzzICEServerConfig(f *testing.F) {
	f.Add(200, "", []byte(`{"IceServerList":[{"Uris":["turn:1-2-3-4.t-1.kinesisvideo.us-east-1.amazonaws.com:443?transport=udp"],"Username":"u","Password":"p","Ttl":300}]}`))
	f.Add(403, "AccessDeniedException:http://internal.amazon.com/coral/com.amazonaws.kinesisvideo.v20170930/", []byte(`{"message":"Signature expired"}`))
	f.Fuzz(func(t *testing.T, status int, errorType string, body []byte) {
		if status < 100 || status > 999 {
			status = 100 + (status%900+900)%900
		}
		h := http.Header{}
		if errorType != "" {
			h.Set("X-Amzn-Errortype", errorType)
		}
		c, err := NewClient(ClientOptions{
			Region:      "us-east-1",
			Credentials: staticProvider{},
			HTTPClient:  &http.Client{Transport: fixedAnswer{status: status, header: h, body: body}},
		})
		if err != nil {
			t.Fatal(err)
		}
		servers, err := c.ICEServers(context.Background(), Target{ChannelARN: "arn:aws:kinesisvideo:us-east-1:123456789012:channel/cam/1", Endpoints: Endpoints{HTTPS: "https://r-1.kinesisvideo.us-east-1.amazonaws.com"}})
		if err != nil {
			if status == http.StatusOK {
				if !strings.Contains(err.Error(), "GetIceServerConfig") {
					t.Fatalf("error %q does not name the call", err)
				}
				return
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != status {
				t.Fatalf("a %d answer gave %v, not an *APIError with its status", status, err)
			}
			return
		}
		if status != http.StatusOK {
			t.Fatalf("servers from a %d answer", status)
		}
		if len(servers) == 0 || servers[len(servers)-1].URLs[0] != "stun:stun.kinesisvideo.us-east-1.amazonaws.com:443" {
			t.Fatalf("the STUN server is not last: %+v", servers)
		}
		for _, s := range servers {
			if s.TTL < 0 || s.TTL > 24*time.Hour {
				t.Fatalf("TTL %s out of 0…24h", s.TTL)
			}
		}
	})
}

// staticProvider hands out fixed keys.
type staticProvider struct{}

func (staticProvider) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}, nil
}
