package signaling

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits of the signaling service (WIRE-FORMATS §5).
const (
	// MaxPayloadSize is the largest messagePayload, counted as its base64 text: 10 KB.
	MaxPayloadSize = 10 * 1024
	// MaxMessageSize bounds a whole WebSocket message; anything larger is not a signaling
	// message (a payload at the limit plus the other fields stays far below it).
	MaxMessageSize = 64 * 1024
	// maxIDLength bounds client and correlation IDs.
	maxIDLength = 256
)

// MessageType names a signaling message: the "action" a client sends, or the "messageType"
// the service delivers.
type MessageType string

// Message types.
const (
	TypeSDPOffer           MessageType = "SDP_OFFER"
	TypeSDPAnswer          MessageType = "SDP_ANSWER"
	TypeICECandidate       MessageType = "ICE_CANDIDATE"
	TypeGoAway             MessageType = "GO_AWAY"
	TypeReconnectICEServer MessageType = "RECONNECT_ICE_SERVER"
	TypeStatusResponse     MessageType = "STATUS_RESPONSE"
)

// ErrMalformed is wrapped by every decoding error, so that callers can count drops.
var ErrMalformed = errors.New("malformed signaling message")

// SessionDescription is the payload of SDP_OFFER and SDP_ANSWER, as a browser's
// RTCSessionDescription.toJSON() writes it: {"type":"offer","sdp":"v=0\r\n…"}.
type SessionDescription struct {
	Type string `json:"type"` // "offer" or "answer"
	SDP  string `json:"sdp"`
}

// ICECandidate is the payload of ICE_CANDIDATE, as a browser's RTCIceCandidate.toJSON()
// writes it. An empty Candidate means the end of candidates.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// StatusResponse reports why the service refused a message that carried a correlation ID.
type StatusResponse struct {
	CorrelationID string
	ErrorType     string
	StatusCode    string // AWS sends it as a string, e.g. "400"
	Description   string
}

// Message is a decoded service→client message.
type Message struct {
	Type MessageType
	// SenderClientID is the viewer that sent an offer, answer or candidate (set by the
	// service; empty on messages from the master and on service messages).
	SenderClientID string
	SDP            *SessionDescription // SDP_OFFER, SDP_ANSWER
	Candidate      *ICECandidate       // ICE_CANDIDATE
	Status         *StatusResponse     // STATUS_RESPONSE
}

// Outgoing is a client→service message. A master must set RecipientClientID; a viewer must
// not. Exactly one of SDP (SDP_OFFER, SDP_ANSWER) and Candidate (ICE_CANDIDATE) is set.
type Outgoing struct {
	Action            MessageType
	RecipientClientID string
	CorrelationID     string // optional: asks for a STATUS_RESPONSE if the message fails
	SDP               *SessionDescription
	Candidate         *ICECandidate
}

// clientWire is the client→service JSON. AWS's JavaScript SDK writes these camelCase keys;
// its C SDK capitalises them (RecipientClientId, …), which the service accepts too.
type clientWire struct {
	Action            MessageType `json:"action"`
	RecipientClientID string      `json:"recipientClientId,omitempty"`
	MessagePayload    string      `json:"messagePayload"`
	CorrelationID     string      `json:"correlationId,omitempty"`
}

// serviceWire is the service→client JSON. encoding/json matches keys case-insensitively,
// so the capitalised spellings (SenderClientId, MessageType, …) decode as well.
type serviceWire struct {
	SenderClientID *string     `json:"senderClientId"`
	MessageType    *string     `json:"messageType"`
	MessagePayload *string     `json:"messagePayload"`
	StatusResponse *statusWire `json:"statusResponse"`
}

type statusWire struct {
	CorrelationID string          `json:"correlationId"`
	ErrorType     string          `json:"errorType"`
	StatusCode    json.RawMessage `json:"statusCode"` // "400" (AWS) or 400
	Description   string          `json:"description"`
}

// Encode writes a client→service message.
func Encode(o Outgoing) ([]byte, error) {
	var payload any
	switch o.Action {
	case TypeSDPOffer, TypeSDPAnswer:
		if o.SDP == nil || o.Candidate != nil {
			return nil, fmt.Errorf("encode %s: needs a session description and no candidate", o.Action)
		}
		want := "offer"
		if o.Action == TypeSDPAnswer {
			want = "answer"
		}
		if o.SDP.Type != want || o.SDP.SDP == "" {
			return nil, fmt.Errorf("encode %s: session description must be of type %q with an SDP (got type %q)", o.Action, want, o.SDP.Type)
		}
		payload = o.SDP
	case TypeICECandidate:
		if o.Candidate == nil || o.SDP != nil {
			return nil, fmt.Errorf("encode %s: needs a candidate and no session description", o.Action)
		}
		payload = o.Candidate
	default:
		return nil, fmt.Errorf("encode: %q is not an action a client may send (use SDP_OFFER, SDP_ANSWER or ICE_CANDIDATE)", o.Action)
	}
	if o.RecipientClientID != "" {
		if err := ValidateClientID(o.RecipientClientID); err != nil {
			return nil, fmt.Errorf("encode %s: recipient: %w", o.Action, err)
		}
	}
	if o.CorrelationID != "" && !validID(o.CorrelationID) {
		return nil, fmt.Errorf("encode %s: correlation ID %q: use 1 to %d of [A-Za-z0-9_.-]", o.Action, o.CorrelationID, maxIDLength)
	}
	js, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", o.Action, err)
	}
	b64 := base64.StdEncoding.EncodeToString(js)
	if len(b64) > MaxPayloadSize {
		return nil, fmt.Errorf("encode %s: payload is %d bytes of base64, over the service's %d-byte limit (trickle ICE candidates instead of embedding them in the SDP)", o.Action, len(b64), MaxPayloadSize)
	}
	return json.Marshal(clientWire{
		Action:            o.Action,
		RecipientClientID: o.RecipientClientID,
		MessagePayload:    b64,
		CorrelationID:     o.CorrelationID,
	})
}

// Decode reads a service→client message. Every failure wraps ErrMalformed; Decode never
// panics, whatever the input.
func Decode(data []byte) (Message, error) {
	if len(data) > MaxMessageSize {
		return Message{}, malformed("message of %d bytes is over %d", len(data), MaxMessageSize)
	}
	var w serviceWire
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&w); err != nil {
		return Message{}, fmt.Errorf("%w: not a JSON object: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Message{}, malformed("trailing data after the JSON object")
	}
	if w.MessageType == nil || *w.MessageType == "" {
		return Message{}, malformed("no messageType")
	}
	m := Message{Type: MessageType(*w.MessageType)}
	if w.SenderClientID != nil {
		m.SenderClientID = *w.SenderClientID
	}
	switch m.Type {
	case TypeSDPOffer, TypeSDPAnswer:
		raw, err := decodePayload(m.Type, w.MessagePayload)
		if err != nil {
			return Message{}, err
		}
		sd, err := decodeSDP(m.Type, raw)
		if err != nil {
			return Message{}, err
		}
		m.SDP = sd
	case TypeICECandidate:
		raw, err := decodePayload(m.Type, w.MessagePayload)
		if err != nil {
			return Message{}, err
		}
		c, err := decodeCandidate(raw)
		if err != nil {
			return Message{}, err
		}
		m.Candidate = c
	case TypeGoAway, TypeReconnectICEServer:
		// No payload to read.
	case TypeStatusResponse:
		if w.StatusResponse == nil {
			return Message{}, malformed("STATUS_RESPONSE without statusResponse")
		}
		code, err := statusCode(w.StatusResponse.StatusCode)
		if err != nil {
			return Message{}, err
		}
		m.Status = &StatusResponse{
			CorrelationID: w.StatusResponse.CorrelationID,
			ErrorType:     w.StatusResponse.ErrorType,
			StatusCode:    code,
			Description:   w.StatusResponse.Description,
		}
	default:
		return Message{}, malformed("unknown messageType %.40q", string(m.Type))
	}
	return m, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// decodePayload checks the size of a base64 messagePayload and decodes it.
func decodePayload(t MessageType, p *string) ([]byte, error) {
	if p == nil || *p == "" {
		return nil, malformed("%s without messagePayload", t)
	}
	if len(*p) > MaxPayloadSize {
		return nil, malformed("%s payload of %d bytes is over %d", t, len(*p), MaxPayloadSize)
	}
	raw, err := base64.StdEncoding.DecodeString(*p)
	if err != nil {
		// Some clients leave out the padding.
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(*p, "="))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s payload is not base64: %v", ErrMalformed, t, err)
	}
	return raw, nil
}

func decodeSDP(t MessageType, raw []byte) (*SessionDescription, error) {
	var sd struct {
		Type *string `json:"type"`
		SDP  *string `json:"sdp"`
	}
	if err := json.Unmarshal(raw, &sd); err != nil {
		return nil, fmt.Errorf("%w: %s payload is not a session description: %v", ErrMalformed, t, err)
	}
	want := "offer"
	if t == TypeSDPAnswer {
		want = "answer"
	}
	if sd.Type == nil || *sd.Type != want {
		return nil, malformed("%s payload must have \"type\":%q", t, want)
	}
	if sd.SDP == nil || *sd.SDP == "" {
		return nil, malformed("%s payload has no sdp", t)
	}
	return &SessionDescription{Type: *sd.Type, SDP: *sd.SDP}, nil
}

func decodeCandidate(raw []byte) (*ICECandidate, error) {
	var c struct {
		Candidate *string `json:"candidate"`
		ICECandidate
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: ICE_CANDIDATE payload is not a candidate: %v", ErrMalformed, err)
	}
	if c.Candidate == nil {
		return nil, malformed("ICE_CANDIDATE payload has no \"candidate\"")
	}
	out := c.ICECandidate
	out.Candidate = *c.Candidate
	return &out, nil
}

// statusCode accepts "400" (AWS's spelling) and 400.
func statusCode(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if _, err := strconv.ParseFloat(n.String(), 64); err == nil {
			return n.String(), nil
		}
	}
	return "", malformed("statusCode %.20s is neither a string nor a number", string(raw))
}

// ValidateClientID checks a viewer's client ID: 1 to 256 of [A-Za-z0-9_.-], not starting
// with AWS_ (reserved by the service).
func ValidateClientID(id string) error {
	if !validID(id) {
		return fmt.Errorf("client ID %.40q: use 1 to %d of [A-Za-z0-9_.-]", id, maxIDLength)
	}
	if strings.HasPrefix(id, "AWS_") {
		return fmt.Errorf("client ID %q: the AWS_ prefix is reserved", id)
	}
	return nil
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
