package signaling

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// PresignExpiry is the lifetime of a presigned WebSocket URL (X-Amz-Expires), as AWS's SDKs use.
const PresignExpiry = 299 * time.Second

// emptySHA256 is the hash of an empty payload, which a presigned GET signs.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// PresignURL returns the SigV4 query-presigned WebSocket URL for t:
// <wss endpoint>?X-Amz-ChannelARN=<arn>[&X-Amz-ClientId=<viewer>] plus X-Amz-Algorithm,
// -Credential (scope <date>/<region>/kinesisvideo/aws4_request), -Date, -Expires=299,
// -Security-Token (when the credentials have one: it is part of what is signed, as KVS
// requires), -SignedHeaders=host and -Signature. It is signed with fresh credentials at the
// corrected time.
func (c *Client) PresignURL(ctx context.Context, t Target) (string, error) {
	creds, err := c.credentials(ctx)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(t.Endpoints.WSS)
	if err != nil || u.Host == "" || (u.Scheme != "wss" && u.Scheme != "ws") {
		return "", fmt.Errorf("signaling: WSS endpoint %q is not a ws:// or wss:// URL", t.Endpoints.WSS)
	}
	if t.ChannelARN == "" {
		return "", fmt.Errorf("signaling: no channel ARN to connect to")
	}
	q := url.Values{}
	q.Set("X-Amz-ChannelARN", t.ChannelARN)
	if t.ClientID != "" {
		if err := ValidateClientID(t.ClientID); err != nil {
			return "", fmt.Errorf("signaling: %w", err)
		}
		q.Set("X-Amz-ClientId", t.ClientID)
	}
	q.Set("X-Amz-Expires", fmt.Sprint(int(PresignExpiry/time.Second)))
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	// aws-sdk-go-v2's presigner puts X-Amz-Security-Token into the query before it builds
	// the canonical request, so the token is signed (the test checks it against an
	// independent implementation of AWS's JavaScript presigner).
	signed, _, err := c.signer.PresignHTTP(ctx, creds, req, emptySHA256, service, c.opts.Region, c.clock.now())
	if err != nil {
		return "", fmt.Errorf("signaling: presigning the WebSocket URL: %w", err)
	}
	return signed, nil
}

// readLimit is far above MaxMessageSize: an oversized message is then read whole and
// counted as a dropped message by the decoder, instead of closing the connection.
const readLimit = 1 << 20

// Dial opens the signaling WebSocket for t with a freshly presigned URL. When the service
// refuses it because of the device's clock, Dial learns the offset from the Date header and
// tries once more.
func (c *Client) Dial(ctx context.Context, t Target) (*websocket.Conn, error) {
	for attempt := 0; ; attempt++ {
		u, err := c.PresignURL(ctx, t)
		if err != nil {
			return nil, err
		}
		sent := time.Now()
		conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.http})
		if err == nil {
			conn.SetReadLimit(readLimit)
			return conn, nil
		}
		if resp == nil {
			return nil, fmt.Errorf("signaling: WebSocket %s: %w — check the network", t.Endpoints.WSS, err)
		}
		if attempt == 0 && c.clock.observe(resp, sent) {
			c.log.Warn("signaling service refused the signature's time; correcting the clock offset",
				zap.Duration("offset", c.clock.Offset()))
			continue
		}
		var body []byte
		if resp.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 4096))
		}
		apiErr := httpAPIError(resp, body)
		// Credentials the service does not know (its issuer restarted, they were revoked):
		// drop them and connect again with new ones, once.
		if attempt < 2 && c.checkRefusal(apiErr) {
			continue
		}
		return nil, fmt.Errorf("signaling: WebSocket %s refused: %w", t.Endpoints.WSS, apiErr)
	}
}
