package localcloud

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
)

// The signaling service's own reading and writing of messages (WIRE-FORMATS §5). It is
// written apart from package signaling on purpose: a stand-in that shared the client's codec
// would agree with the client's mistakes.

// maxSignalingPayload is the largest messagePayload (its base64 text): 10 KB.
const maxSignalingPayload = 10 * 1024

var clientIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,256}$`)

// clientMessage is what a client sends. encoding/json matches keys case-insensitively, so
// AWS's C SDK's RecipientClientId, MessagePayload, CorrelationId and Action are read too.
type clientMessage struct {
	Action            *string `json:"action"`
	RecipientClientID *string `json:"recipientClientId"`
	MessagePayload    *string `json:"messagePayload"`
	CorrelationID     *string `json:"correlationId"`
}

// routeFailure is a refused client message; it becomes a STATUS_RESPONSE when the message
// carried a correlation ID.
type routeFailure struct {
	StatusCode  string
	ErrorType   string
	Description string
}

func invalid(format string, args ...any) *routeFailure {
	return &routeFailure{StatusCode: "400", ErrorType: "InvalidArgumentException", Description: fmt.Sprintf(format, args...)}
}

// parseClientMessage reads and checks a client message. The correlation ID comes back
// whenever the JSON could be read, even when the message is refused.
func parseClientMessage(data []byte) (m clientMessage, correlationID string, fail *routeFailure) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil || dec.More() {
		return m, "", invalid("The message is not a JSON object")
	}
	if m.CorrelationID != nil {
		correlationID = *m.CorrelationID
	}
	if m.Action == nil {
		return m, correlationID, invalid("action is required")
	}
	switch *m.Action {
	case "SDP_OFFER", "SDP_ANSWER", "ICE_CANDIDATE":
	default:
		return m, correlationID, invalid("Unsupported action %.40q: use SDP_OFFER, SDP_ANSWER or ICE_CANDIDATE", *m.Action)
	}
	if m.MessagePayload == nil || *m.MessagePayload == "" {
		return m, correlationID, invalid("messagePayload is required")
	}
	if n := len(*m.MessagePayload); n > maxSignalingPayload {
		return m, correlationID, invalid("messagePayload is %d bytes; the limit is %d", n, maxSignalingPayload)
	}
	if _, err := base64.StdEncoding.DecodeString(*m.MessagePayload); err != nil {
		return m, correlationID, invalid("messagePayload is not base64")
	}
	if m.RecipientClientID != nil && *m.RecipientClientID != "" && !clientIDPattern.MatchString(*m.RecipientClientID) {
		return m, correlationID, invalid("recipientClientId must be 1 to 256 of [a-zA-Z0-9_.-]")
	}
	return m, correlationID, nil
}

// serviceMessage is what the service sends a client.
type serviceMessage struct {
	SenderClientID string              `json:"senderClientId,omitempty"`
	MessageType    string              `json:"messageType"`
	MessagePayload string              `json:"messagePayload,omitempty"`
	StatusResponse *statusResponseWire `json:"statusResponse,omitempty"`
}

type statusResponseWire struct {
	CorrelationID string `json:"correlationId"`
	ErrorType     string `json:"errorType"`
	StatusCode    string `json:"statusCode"`
	Description   string `json:"description"`
}

func encodeServiceMessage(m serviceMessage) []byte {
	data, _ := json.Marshal(m) // strings only: cannot fail
	return data
}

func statusResponse(correlationID string, f *routeFailure) []byte {
	return encodeServiceMessage(serviceMessage{
		MessageType: "STATUS_RESPONSE",
		StatusResponse: &statusResponseWire{
			CorrelationID: correlationID, ErrorType: f.ErrorType, StatusCode: f.StatusCode, Description: f.Description,
		},
	})
}
