package signaling

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// MasterClientID is the client ID a master gives GetIceServerConfig (AWS's SDKs use it too).
const MasterClientID = "ProducerMaster"

// ICEServer is a STUN or TURN server for WebRTC, in the shape of the browser's RTCIceServer.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
	// TTL is how long the TURN credentials stay valid (zero for STUN).
	TTL time.Duration
}

// Target is one connection to a channel: its ARN, endpoints and, for a viewer, client ID.
type Target struct {
	ChannelARN string
	Endpoints  Endpoints
	// ClientID is empty for the master.
	ClientID string
}

type iceRequest struct {
	ChannelARN string `json:"ChannelARN"`
	ClientID   string `json:"ClientId"`
	Service    string `json:"Service"`
}

type iceResponse struct {
	IceServerList []struct {
		Uris     []string `json:"Uris"`
		Username string   `json:"Username"`
		Password string   `json:"Password"`
		TTL      int64    `json:"Ttl"`
	} `json:"IceServerList"`
}

// ICEServers calls GetIceServerConfig on the target's HTTPS endpoint (a SigV4-signed POST to
// /v1/get-ice-server-config) and returns the TURN servers followed by the STUN server.
func (c *Client) ICEServers(ctx context.Context, t Target) ([]ICEServer, error) {
	clientID := t.ClientID
	if clientID == "" {
		clientID = MasterClientID
	}
	body, err := json.Marshal(iceRequest{ChannelARN: t.ChannelARN, ClientID: clientID, Service: "TURN"})
	if err != nil {
		return nil, err
	}
	url := strings.TrimSuffix(t.Endpoints.HTTPS, "/") + "/v1/get-ice-server-config"
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		sent := time.Now()
		resp, err = c.postSigned(ctx, url, body)
		if err != nil {
			return nil, fmt.Errorf("signaling: GetIceServerConfig at %s: %w", url, err)
		}
		// A refusal that blamed the clock taught the clock its offset: sign again, once.
		if attempt == 0 && c.clock.observe(resp, sent) {
			resp.Body.Close()
			continue
		}
		if resp.StatusCode == http.StatusForbidden && attempt < 2 {
			// Refused credentials are dropped and the call made again with new ones, once.
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			apiErr := httpAPIError(resp, data)
			if c.checkRefusal(apiErr) {
				continue
			}
			return nil, fmt.Errorf("signaling: GetIceServerConfig %s: %w", t.ChannelARN, apiErr)
		}
		break
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("signaling: GetIceServerConfig: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("signaling: GetIceServerConfig %s: %w", t.ChannelARN, httpAPIError(resp, data))
	}
	var out iceResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("signaling: GetIceServerConfig: unreadable answer: %w", err)
	}
	var servers []ICEServer
	for _, s := range out.IceServerList {
		servers = append(servers, ICEServer{URLs: s.Uris, Username: s.Username, Credential: s.Password, TTL: iceTTL(s.TTL)})
	}
	if !c.opts.DisableSTUN {
		servers = append(servers, ICEServer{URLs: []string{c.opts.STUNURL}})
	}
	return servers, nil
}

// maxICETTL bounds a TURN TTL (AWS gives 300 s): a larger one is taken as this, so that the
// refresh schedule, computed from it, cannot overflow.
const maxICETTL = 24 * time.Hour

// iceTTL converts the answer's Ttl (seconds); a negative one is unknown (zero).
func iceTTL(seconds int64) time.Duration {
	switch {
	case seconds <= 0:
		return 0
	case seconds > int64(maxICETTL/time.Second):
		return maxICETTL
	}
	return time.Duration(seconds) * time.Second
}

// postSigned sends a SigV4-signed JSON POST, signed at the corrected time.
func (c *Client) postSigned(ctx context.Context, url string, body []byte) (*http.Response, error) {
	creds, err := c.credentials(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), service, c.opts.Region, c.clock.now()); err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w — check the network", err)
	}
	return resp, nil
}

// APIError is a refusal from the signaling service outside the AWS SDK (GetIceServerConfig,
// the WebSocket handshake).
type APIError struct {
	Status    int
	ErrorType string // x-amzn-ErrorType, without AWS's ":http://…" suffix
	Message   string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.ErrorType != "" {
		s += " " + e.ErrorType
	}
	if e.Message != "" {
		s += fmt.Sprintf(": %q", e.Message)
	}
	switch e.Status {
	case http.StatusForbidden:
		s += " — check the device's clock and its AWS credentials (and that their role allows kinesisvideo:ConnectAsMaster and kinesisvideo:GetIceServerConfig)"
	case http.StatusNotFound:
		s += " — check the channel ARN and region"
	}
	return s
}

func httpAPIError(resp *http.Response, body []byte) *APIError {
	e := &APIError{Status: resp.StatusCode, ErrorType: resp.Header.Get("X-Amzn-Errortype")}
	if i := strings.IndexByte(e.ErrorType, ':'); i >= 0 {
		e.ErrorType = e.ErrorType[:i]
	}
	var msg map[string]any
	if json.Unmarshal(body, &msg) == nil {
		for _, k := range []string{"message", "Message"} {
			if s, ok := msg[k].(string); ok {
				e.Message = s
			}
		}
	}
	return e
}
