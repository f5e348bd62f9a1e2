package signaling

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"
)

// kvsJSPresignature signs a URL the way AWS's KVS WebRTC SDK for JavaScript does
// (SigV4RequestSigner.getSignedURL), written independently of aws-sdk-go-v2: every query
// parameter but the signature, the session token included, is in the canonical request.
func kvsJSPresignature(t *testing.T, signedURL string, secret, region string) string {
	t.Helper()
	u, err := url.Parse(signedURL)
	require.NoError(t, err)
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		if k != "X-Amz-Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var cq []string
	for _, k := range keys {
		cq = append(cq, k+"="+uriEncode(q.Get(k)))
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	canonical := strings.Join([]string{"GET", path, strings.Join(cq, "&"), "host:" + u.Host + "\n", "host", hexSHA256("")}, "\n")
	datetime := q.Get("X-Amz-Date")
	scope := datetime[:8] + "/" + region + "/kinesisvideo/aws4_request"
	toSign := strings.Join([]string{"AWS4-HMAC-SHA256", datetime, scope, hexSHA256(canonical)}, "\n")
	key := hmacSHA256([]byte("AWS4"+secret), datetime[:8])
	for _, s := range []string{region, "kinesisvideo", "aws4_request"} {
		key = hmacSHA256(key, s)
	}
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

// uriEncode is encodeURIComponent for the characters that occur in these parameters.
func uriEncode(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func hexSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

func staticCreds(c aws.Credentials) aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return c, nil })
}

func TestPresignURL(t *testing.T) {
	const arn = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/front-door/1700000000000"
	withToken := aws.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", SessionToken: "IQoJb3JpZ2luX2VjE+/token=="}
	longTerm := aws.Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "secret"}
	for _, tc := range []struct {
		name     string
		creds    aws.Credentials
		endpoint string
		clientID string
		offset   time.Duration
		keys     []string
	}{
		{"master with a session token", withToken, "wss://v-1a2b3c4d.kinesisvideo.us-west-2.amazonaws.com", "", 0,
			[]string{"X-Amz-Algorithm", "X-Amz-ChannelARN", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders"}},
		{"viewer with long-term keys", longTerm, "wss://v-1a2b3c4d.kinesisvideo.us-west-2.amazonaws.com", "viewer-7", 0,
			[]string{"X-Amz-Algorithm", "X-Amz-ChannelARN", "X-Amz-ClientId", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature", "X-Amz-SignedHeaders"}},
		{"localcloud endpoint with a port and a path, clock corrected", withToken, "ws://127.0.0.1:18444/signaling", "", 3 * time.Hour,
			[]string{"X-Amz-Algorithm", "X-Amz-ChannelARN", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(ClientOptions{Region: "us-west-2", Credentials: staticCreds(tc.creds)})
			require.NoError(t, err)
			c.clock.offset.Store(int64(tc.offset))
			signed, err := c.PresignURL(context.Background(), Target{ChannelARN: arn, Endpoints: Endpoints{WSS: tc.endpoint}, ClientID: tc.clientID})
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(signed, tc.endpoint+"?"), signed)

			u, err := url.Parse(signed)
			require.NoError(t, err)
			q := u.Query()
			var keys []string
			for k, v := range q {
				require.Len(t, v, 1, k)
				keys = append(keys, k)
			}
			sort.Strings(keys)
			require.Equal(t, tc.keys, keys)
			require.Equal(t, arn, q.Get("X-Amz-ChannelARN"))
			require.Equal(t, tc.clientID, q.Get("X-Amz-ClientId"))
			require.Equal(t, "AWS4-HMAC-SHA256", q.Get("X-Amz-Algorithm"))
			require.Equal(t, "299", q.Get("X-Amz-Expires"))
			require.Equal(t, "host", q.Get("X-Amz-SignedHeaders"))
			require.Equal(t, tc.creds.SessionToken, q.Get("X-Amz-Security-Token"))
			date, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
			require.NoError(t, err)
			require.WithinDuration(t, time.Now().Add(tc.offset), date, 5*time.Second, "signed at the corrected time")
			require.Equal(t, tc.creds.AccessKeyID+"/"+date.Format("20060102")+"/us-west-2/kinesisvideo/aws4_request", q.Get("X-Amz-Credential"))
			require.Equal(t, kvsJSPresignature(t, signed, tc.creds.SecretAccessKey, "us-west-2"), q.Get("X-Amz-Signature"),
				"the signature covers every parameter, the session token included")
		})
	}
}

func TestEmptyPayloadHash(t *testing.T) {
	require.Equal(t, hexSHA256(""), emptySHA256)
}

func TestPresignURLRefuses(t *testing.T) {
	c, err := NewClient(ClientOptions{Region: "us-west-2", Credentials: staticCreds(aws.Credentials{AccessKeyID: "A", SecretAccessKey: "S"})})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		t    Target
	}{
		{"https endpoint", Target{ChannelARN: "arn", Endpoints: Endpoints{WSS: "https://x"}}},
		{"no host", Target{ChannelARN: "arn", Endpoints: Endpoints{WSS: "wss://"}}},
		{"no ARN", Target{Endpoints: Endpoints{WSS: "wss://x"}}},
		{"reserved client ID", Target{ChannelARN: "arn", Endpoints: Endpoints{WSS: "wss://x"}, ClientID: "AWS_1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.PresignURL(context.Background(), tc.t)
			require.Error(t, err)
		})
	}
}

func TestClockObserve(t *testing.T) {
	now := time.Now()
	resp := func(status int, errType, body string, date time.Time) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
		if errType != "" {
			r.Header.Set("x-amzn-ErrorType", errType)
		}
		if !date.IsZero() {
			r.Header.Set("Date", date.UTC().Format(http.TimeFormat))
		}
		return r
	}
	for _, tc := range []struct {
		name    string
		resp    *http.Response
		changed bool
		offset  time.Duration
	}{
		{"signature expired, server 20 min ahead", resp(403, "InvalidSignatureException:http://internal.amazon.com/coral/", `{"message":"Signature expired: …"}`, now.Add(20*time.Minute)), true, 20 * time.Minute},
		{"not yet current, server 2 h behind", resp(403, "InvalidSignatureException", `{"message":"Signature not yet current"}`, now.Add(-2*time.Hour)), true, -2 * time.Hour},
		{"only the body says so", resp(403, "", `{"message":"Signature expired: 20240101T000000Z is now earlier than …"}`, now.Add(10*time.Minute)), true, 10 * time.Minute},
		{"access denied is not about time", resp(403, "AccessDeniedException", `{"Message":"User is not authorized"}`, now.Add(time.Hour)), false, 0},
		{"success", resp(200, "", `{}`, now.Add(time.Hour)), false, 0},
		{"no Date header", resp(403, "InvalidSignatureException", `{}`, time.Time{}), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c clock
			require.Equal(t, tc.changed, c.observe(tc.resp, now))
			require.InDelta(t, tc.offset.Seconds(), c.Offset().Seconds(), 2)
			body, err := io.ReadAll(tc.resp.Body)
			require.NoError(t, err)
			require.NotEmpty(t, body, "the body is still there for the caller")
		})
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		n        int
		min, max time.Duration
	}{
		{0, 0, 0},
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{10, 500 * time.Millisecond, time.Second},
	} {
		for range 50 {
			d := b.Delay(tc.n)
			require.GreaterOrEqual(t, d, tc.min, "attempt %d", tc.n)
			require.LessOrEqual(t, d, tc.max, "attempt %d", tc.n)
		}
	}
}
