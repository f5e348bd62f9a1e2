package localcloud

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"time"

	"go.uber.org/zap"
)

// The KVS signaling control plane (WIRE-FORMATS §5): POST JSON, SigV4 in the Authorization
// header, AWS's JSON error shapes so that the AWS SDKs map them to their typed errors.

var channelNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,256}$`)

type channelInfoWire struct {
	ChannelARN                string  `json:"ChannelARN"`
	ChannelName               string  `json:"ChannelName"`
	ChannelStatus             string  `json:"ChannelStatus"`
	ChannelType               string  `json:"ChannelType"`
	CreationTime              float64 `json:"CreationTime"` // epoch seconds, as AWS's REST-JSON writes timestamps
	SingleMasterConfiguration struct {
		MessageTtlSeconds int `json:"MessageTtlSeconds"`
	} `json:"SingleMasterConfiguration"`
	Version string `json:"Version"`
}

func (k *kvsServer) channelInfo(c signalingChannel) channelInfoWire {
	w := channelInfoWire{
		ChannelARN: c.ARN, ChannelName: c.Name, ChannelStatus: c.status(), ChannelType: c.Type,
		CreationTime: float64(c.CreationTime.UnixMilli()) / 1000, Version: c.Version,
	}
	w.SingleMasterConfiguration.MessageTtlSeconds = c.MessageTTLSeconds
	return w
}

// controlPlane wraps an operation: POST only, body read, signature verified, JSON decoded,
// answer or AWS error written.
func (k *kvsServer) controlPlane(op string, in func() any, do func(r *http.Request, in any) (any, *awsError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			serviceError(http.StatusMethodNotAllowed, "MethodNotAllowedException", "%s takes POST", op).write(w)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			serviceError(http.StatusBadRequest, "SerializationException", "unreadable body: %v", err).write(w)
			return
		}
		principal, aerr := k.verifier.verifyHeader(r, body)
		log := k.log.With(zap.String("op", op), zap.String("principal", principal))
		if aerr != nil {
			log.Warn("refused: bad signature", zap.String("error_type", aerr.Type), zap.String("message", aerr.Message))
			aerr.write(w)
			return
		}
		req := in()
		if len(body) > 0 {
			if err := json.Unmarshal(body, req); err != nil {
				serviceError(http.StatusBadRequest, "SerializationException", "unreadable JSON body: %v", err).write(w)
				return
			}
		}
		out, aerr := do(r, req)
		if aerr != nil {
			log.Info("refused", zap.String("error_type", aerr.Type), zap.String("message", aerr.Message))
			aerr.write(w)
			return
		}
		log.Debug("answered")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

type describeChannelInput struct {
	ChannelARN  string `json:"ChannelARN"`
	ChannelName string `json:"ChannelName"`
}

func (k *kvsServer) describeChannel(_ *http.Request, v any) (any, *awsError) {
	in := v.(*describeChannelInput)
	c, aerr := k.findChannel(in.ChannelName, in.ChannelARN)
	if aerr != nil {
		return nil, aerr
	}
	return map[string]any{"ChannelInfo": k.channelInfo(c)}, nil
}

// findChannel looks a channel up by name or ARN (exactly one of them).
func (k *kvsServer) findChannel(name, arn string) (signalingChannel, *awsError) {
	var (
		c  signalingChannel
		ok bool
	)
	switch {
	case (name == "") == (arn == ""):
		return c, serviceError(http.StatusBadRequest, "InvalidArgumentException", "Either ChannelName or ChannelARN must be given, not both")
	case name != "":
		c, ok = k.channels.named(name)
	default:
		c, ok = k.channels.withARN(arn)
	}
	if !ok {
		return c, serviceError(http.StatusNotFound, "ResourceNotFoundException", "The requested channel is not found or not active.")
	}
	return c, nil
}

type createChannelInput struct {
	ChannelName               string `json:"ChannelName"`
	ChannelType               string `json:"ChannelType"`
	SingleMasterConfiguration *struct {
		MessageTtlSeconds *int `json:"MessageTtlSeconds"`
	} `json:"SingleMasterConfiguration"`
	Tags []struct {
		Key   string `json:"Key"`
		Value string `json:"Value"`
	} `json:"Tags"`
}

func (k *kvsServer) createChannel(_ *http.Request, v any) (any, *awsError) {
	in := v.(*createChannelInput)
	if !channelNamePattern.MatchString(in.ChannelName) {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "1 validation error detected: Value '%s' at 'channelName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+", in.ChannelName)
	}
	if in.ChannelType != "" && in.ChannelType != "SINGLE_MASTER" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "ChannelType %s is not supported here; use SINGLE_MASTER", in.ChannelType)
	}
	ttl := 60
	if in.SingleMasterConfiguration != nil && in.SingleMasterConfiguration.MessageTtlSeconds != nil {
		ttl = *in.SingleMasterConfiguration.MessageTtlSeconds
		if ttl < 5 || ttl > 120 {
			return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "MessageTtlSeconds must be between 5 and 120")
		}
	}
	if len(in.Tags) > 50 {
		return nil, serviceError(http.StatusBadRequest, "TagsPerResourceExceededLimitException", "A channel may have at most 50 tags")
	}
	var tags map[string]string
	for _, t := range in.Tags {
		if tags == nil {
			tags = map[string]string{}
		}
		tags[t.Key] = t.Value
	}
	c, err := k.channels.create(in.ChannelName, ttl, tags, k.now(), false)
	if errors.Is(err, errChannelExists) {
		return nil, serviceError(http.StatusBadRequest, "ResourceInUseException", "The signaling channel %s already exists", in.ChannelName)
	}
	if err != nil {
		return nil, serviceError(http.StatusInternalServerError, "ServiceUnavailableException", "%v", err)
	}
	k.log.Info("signaling channel created", zap.String("channel", c.Name), zap.String("arn", c.ARN))
	return map[string]string{"ChannelARN": c.ARN}, nil
}

type endpointInput struct {
	ChannelARN                               string `json:"ChannelARN"`
	SingleMasterChannelEndpointConfiguration *struct {
		Protocols []string `json:"Protocols"`
		Role      string   `json:"Role"`
	} `json:"SingleMasterChannelEndpointConfiguration"`
}

type resourceEndpoint struct {
	Protocol         string `json:"Protocol"`
	ResourceEndpoint string `json:"ResourceEndpoint"`
}

// getEndpoint answers with this listener's own endpoints, in the scheme the client used:
// ws:// and http:// over plain HTTP, wss:// and https:// over TLS.
func (k *kvsServer) getEndpoint(r *http.Request, v any) (any, *awsError) {
	in := v.(*endpointInput)
	if in.ChannelARN == "" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "ChannelARN is required")
	}
	c, aerr := k.findChannel("", in.ChannelARN)
	if aerr != nil {
		return nil, aerr
	}
	if c.status() != "ACTIVE" {
		return nil, serviceError(http.StatusBadRequest, "ResourceInUseException", "The channel %s is not ACTIVE yet", c.Name)
	}
	protocols, role := []string{"WSS", "HTTPS"}, "MASTER"
	if cfg := in.SingleMasterChannelEndpointConfiguration; cfg != nil {
		if len(cfg.Protocols) > 0 {
			protocols = cfg.Protocols
		}
		if cfg.Role != "" {
			role = cfg.Role
		}
	}
	if role != "MASTER" && role != "VIEWER" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "Role must be MASTER or VIEWER, not %q", role)
	}
	wsScheme, httpScheme := "ws", "http"
	if r.TLS != nil {
		wsScheme, httpScheme = "wss", "https"
	}
	var list []resourceEndpoint
	for _, p := range protocols {
		switch p {
		case "WSS":
			list = append(list, resourceEndpoint{"WSS", wsScheme + "://" + r.Host + kvsWebSocketPath})
		case "HTTPS":
			list = append(list, resourceEndpoint{"HTTPS", httpScheme + "://" + r.Host + kvsHTTPSPath})
		default:
			return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "Protocol %s is not supported here; use WSS and HTTPS", p)
		}
	}
	return map[string]any{"ResourceEndpointList": list}, nil
}

type iceConfigInput struct {
	ChannelARN string `json:"ChannelARN"`
	ClientID   string `json:"ClientId"`
	Service    string `json:"Service"`
	Username   string `json:"Username"`
}

type iceServerWire struct {
	Password string   `json:"Password"`
	TTL      int64    `json:"Ttl"`
	Uris     []string `json:"Uris"`
	Username string   `json:"Username"`
}

// iceConfig is GetIceServerConfig: the configured servers (none by default; localcloud runs
// no TURN server yet).
func (k *kvsServer) iceConfig(_ *http.Request, v any) (any, *awsError) {
	in := v.(*iceConfigInput)
	if in.ChannelARN == "" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "ChannelARN is required")
	}
	if _, aerr := k.findChannel("", in.ChannelARN); aerr != nil {
		return nil, aerr
	}
	if in.Service != "" && in.Service != "TURN" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "Service must be TURN")
	}
	if in.ClientID != "" && !clientIDPattern.MatchString(in.ClientID) {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "ClientId must be 1 to 256 of [a-zA-Z0-9_.-]")
	}
	list := []iceServerWire{}
	for _, s := range k.iceServers() {
		ttl := s.TTL
		if ttl == 0 {
			ttl = 300 * time.Second
		}
		list = append(list, iceServerWire{Password: s.Password, TTL: int64(ttl / time.Second), Uris: s.URIs, Username: s.Username})
	}
	if k.turn != nil {
		user, pass, err := k.turn.credentials()
		if err != nil {
			return nil, serviceError(http.StatusInternalServerError, "ClientLimitExceededException", "TURN credentials: %v", err)
		}
		list = append(list, iceServerWire{Password: pass, TTL: int64(turnTTL / time.Second), Uris: k.turn.uris(), Username: user})
	}
	return map[string]any{"IceServerList": list}, nil
}
