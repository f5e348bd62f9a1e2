package signaling

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// clock is the client's notion of AWS's time: the local clock plus an offset learnt from the
// Date header of a 403 that blames the signature's time (a device without a real-time clock
// may boot hours off). It is used for every signature this package makes.
type clock struct {
	offset atomic.Int64 // nanoseconds
}

func (c *clock) now() time.Time { return time.Now().Add(c.Offset()) }

// Offset is the correction currently applied.
func (c *clock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// observe learns the offset from a refusal: resp answered a request sent at sent (local
// clock). It reports whether the offset changed by more than a second.
func (c *clock) observe(resp *http.Response, sent time.Time) bool {
	if resp == nil || resp.StatusCode != http.StatusForbidden || !blamesTime(resp) {
		return false
	}
	server, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return false
	}
	received := time.Now()
	mid := sent.Add(received.Sub(sent) / 2)
	off := server.Sub(mid).Round(time.Second)
	old := time.Duration(c.offset.Swap(int64(off)))
	d := off - old
	return d > time.Second || d < -time.Second
}

// blamesTime reports whether a 403 is a signature or time error. It peeks at the body
// (and puts it back) for AWS's "Signature expired" wording.
func blamesTime(resp *http.Response) bool {
	et := resp.Header.Get("X-Amzn-Errortype")
	// The x-amzn-ErrorType values of signature failures that clock skew causes.
	for _, t := range []string{"InvalidSignatureException", "SignatureDoesNotMatch", "RequestTimeTooSkewed", "RequestExpired", "AuthFailure"} {
		if strings.HasPrefix(et, t) {
			return true
		}
	}
	if resp.Body == nil {
		return false
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	s := strings.ToLower(string(head))
	for _, w := range []string{"signature", "expired", "skew"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// observingClient is the HTTP client the AWS SDK uses: it lets the clock see every answer.
// (The SDK corrects its own signing time from the same Date headers; the clock carries the
// correction over to the presigned URL and GetIceServerConfig, which this package signs.)
type observingClient struct {
	http  *http.Client
	clock *clock
}

func (o observingClient) Do(req *http.Request) (*http.Response, error) {
	sent := time.Now()
	resp, err := o.http.Do(req)
	if err == nil {
		o.clock.observe(resp, sent)
	}
	return resp, err
}
