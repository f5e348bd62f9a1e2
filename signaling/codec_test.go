package signaling

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func ptr[T any](v T) *T { return &v }

const testSDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

func TestDecode(t *testing.T) {
	offer := b64(`{"type":"offer","sdp":"` + strings.ReplaceAll(strings.ReplaceAll(testSDP, "\r", `\r`), "\n", `\n`) + `"}`)
	cand := b64(`{"candidate":"candidate:1 1 udp 2122260223 192.168.1.2 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}`)
	for _, tc := range []struct {
		name string
		in   string
		want Message
	}{
		{"offer from a viewer", `{"senderClientId":"viewer-1","messageType":"SDP_OFFER","messagePayload":"` + offer + `"}`,
			Message{Type: TypeSDPOffer, SenderClientID: "viewer-1", SDP: &SessionDescription{Type: "offer", SDP: testSDP}}},
		{"capitalised keys", `{"SenderClientId":"v","MessageType":"SDP_OFFER","MessagePayload":"` + offer + `"}`,
			Message{Type: TypeSDPOffer, SenderClientID: "v", SDP: &SessionDescription{Type: "offer", SDP: testSDP}}},
		{"answer", `{"messageType":"SDP_ANSWER","messagePayload":"` + b64(`{"type":"answer","sdp":"v=0\r\n"}`) + `"}`,
			Message{Type: TypeSDPAnswer, SDP: &SessionDescription{Type: "answer", SDP: "v=0\r\n"}}},
		{"candidate with usernameFragment", `{"senderClientId":"v","messageType":"ICE_CANDIDATE","messagePayload":"` + cand + `"}`,
			Message{Type: TypeICECandidate, SenderClientID: "v", Candidate: &ICECandidate{
				Candidate: "candidate:1 1 udp 2122260223 192.168.1.2 50000 typ host", SDPMid: ptr("0"), SDPMLineIndex: ptr[uint16](0), UsernameFragment: ptr("abcd")}}},
		{"end of candidates, nulls", `{"senderClientId":"v","messageType":"ICE_CANDIDATE","messagePayload":"` + b64(`{"candidate":"","sdpMid":null,"sdpMLineIndex":null}`) + `"}`,
			Message{Type: TypeICECandidate, SenderClientID: "v", Candidate: &ICECandidate{}}},
		{"unpadded base64", `{"senderClientId":"v","messageType":"ICE_CANDIDATE","messagePayload":"` + strings.TrimRight(b64(`{"candidate":"c"}`), "=") + `"}`,
			Message{Type: TypeICECandidate, SenderClientID: "v", Candidate: &ICECandidate{Candidate: "c"}}},
		{"go away", `{"messageType":"GO_AWAY"}`, Message{Type: TypeGoAway}},
		{"go away with an empty payload", `{"senderClientId":"","messageType":"GO_AWAY","messagePayload":""}`, Message{Type: TypeGoAway}},
		{"reconnect ICE server", `{"messageType":"RECONNECT_ICE_SERVER"}`, Message{Type: TypeReconnectICEServer}},
		{"status response", `{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"c1","errorType":"InvalidArgumentException","statusCode":"400","description":"bad"}}`,
			Message{Type: TypeStatusResponse, Status: &StatusResponse{CorrelationID: "c1", ErrorType: "InvalidArgumentException", StatusCode: "400", Description: "bad"}}},
		{"status code as a number", `{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"c1","statusCode":404}}`,
			Message{Type: TypeStatusResponse, Status: &StatusResponse{CorrelationID: "c1", StatusCode: "404"}}},
		{"unknown fields are ignored", `{"messageType":"GO_AWAY","extra":{"a":[1,2]}}`, Message{Type: TypeGoAway}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, in, contains string
	}{
		{"empty", ``, "not a JSON object"},
		{"not JSON", `hello`, "not a JSON object"},
		{"array", `[1,2]`, "not a JSON object"},
		{"null", `null`, "no messageType"},
		{"trailing data", `{"messageType":"GO_AWAY"} {}`, "trailing"},
		{"no type", `{"messagePayload":"` + b64(`{}`) + `"}`, "no messageType"},
		{"type is a number", `{"messageType":5}`, "not a JSON object"},
		{"unknown type", `{"messageType":"HELLO"}`, "unknown messageType"},
		{"offer without payload", `{"senderClientId":"v","messageType":"SDP_OFFER"}`, "without messagePayload"},
		{"offer, payload not base64", `{"senderClientId":"v","messageType":"SDP_OFFER","messagePayload":"%%%"}`, "not base64"},
		{"offer, payload not JSON", `{"senderClientId":"v","messageType":"SDP_OFFER","messagePayload":"` + b64(`nope`) + `"}`, "not a session description"},
		{"offer of type answer", `{"senderClientId":"v","messageType":"SDP_OFFER","messagePayload":"` + b64(`{"type":"answer","sdp":"v=0"}`) + `"}`, `"type":"offer"`},
		{"offer without sdp", `{"senderClientId":"v","messageType":"SDP_OFFER","messagePayload":"` + b64(`{"type":"offer"}`) + `"}`, "no sdp"},
		{"payload over 10 KB", `{"senderClientId":"v","messageType":"SDP_OFFER","messagePayload":"` + strings.Repeat("A", MaxPayloadSize+4) + `"}`, "over 10240"},
		{"message over 64 KB", `{"messageType":"GO_AWAY","x":"` + strings.Repeat("x", MaxMessageSize) + `"}`, "over 65536"},
		{"candidate without candidate", `{"senderClientId":"v","messageType":"ICE_CANDIDATE","messagePayload":"` + b64(`{"sdpMid":"0"}`) + `"}`, `no "candidate"`},
		{"candidate with a negative line index", `{"senderClientId":"v","messageType":"ICE_CANDIDATE","messagePayload":"` + b64(`{"candidate":"c","sdpMLineIndex":-1}`) + `"}`, "not a candidate"},
		{"status response without body", `{"messageType":"STATUS_RESPONSE"}`, "without statusResponse"},
		{"status code an object", `{"messageType":"STATUS_RESPONSE","statusResponse":{"statusCode":{}}}`, "neither a string nor a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			require.ErrorIs(t, err, ErrMalformed)
			require.Contains(t, err.Error(), tc.contains)
		})
	}
}

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Outgoing
		want map[string]any
		// payload is the decoded messagePayload.
		payload string
	}{
		{"answer from the master", Outgoing{Action: TypeSDPAnswer, RecipientClientID: "viewer-1", SDP: &SessionDescription{Type: "answer", SDP: testSDP}},
			map[string]any{"action": "SDP_ANSWER", "recipientClientId": "viewer-1"}, `{"type":"answer","sdp":"` + strings.ReplaceAll(strings.ReplaceAll(testSDP, "\r", `\r`), "\n", `\n`) + `"}`},
		{"candidate with a correlation ID", Outgoing{Action: TypeICECandidate, RecipientClientID: "v", CorrelationID: "c-1",
			Candidate: &ICECandidate{Candidate: "candidate:1", SDPMid: ptr("0"), SDPMLineIndex: ptr[uint16](0)}},
			map[string]any{"action": "ICE_CANDIDATE", "recipientClientId": "v", "correlationId": "c-1"}, `{"candidate":"candidate:1","sdpMid":"0","sdpMLineIndex":0}`},
		{"offer from a viewer (no recipient)", Outgoing{Action: TypeSDPOffer, SDP: &SessionDescription{Type: "offer", SDP: "v=0"}},
			map[string]any{"action": "SDP_OFFER"}, `{"type":"offer","sdp":"v=0"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Encode(tc.in)
			require.NoError(t, err)
			var got map[string]any
			require.NoError(t, json.Unmarshal(data, &got))
			raw, err := base64.StdEncoding.DecodeString(got["messagePayload"].(string))
			require.NoError(t, err)
			require.JSONEq(t, tc.payload, string(raw))
			delete(got, "messagePayload")
			require.Equal(t, tc.want, got)
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	huge := strings.Repeat("a=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\n", 300)
	for _, tc := range []struct {
		name, contains string
		in             Outgoing
	}{
		{"service-only type", "not an action", Outgoing{Action: TypeGoAway}},
		{"answer without SDP", "needs a session description", Outgoing{Action: TypeSDPAnswer, RecipientClientID: "v"}},
		{"answer of type offer", "must be of type", Outgoing{Action: TypeSDPAnswer, SDP: &SessionDescription{Type: "offer", SDP: "v=0"}}},
		{"candidate without candidate", "needs a candidate", Outgoing{Action: TypeICECandidate}},
		{"both payloads", "needs a candidate and no session description", Outgoing{Action: TypeICECandidate, Candidate: &ICECandidate{}, SDP: &SessionDescription{}}},
		{"reserved recipient", "reserved", Outgoing{Action: TypeICECandidate, RecipientClientID: "AWS_x", Candidate: &ICECandidate{}}},
		{"recipient with a space", "use 1 to 256", Outgoing{Action: TypeICECandidate, RecipientClientID: "a b", Candidate: &ICECandidate{}}},
		{"bad correlation ID", "correlation ID", Outgoing{Action: TypeICECandidate, CorrelationID: "a/b", Candidate: &ICECandidate{}}},
		{"payload over 10 KB", "limit", Outgoing{Action: TypeSDPAnswer, RecipientClientID: "v", SDP: &SessionDescription{Type: "answer", SDP: huge}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(tc.in)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.contains)
		})
	}
}

// TestRoundTrip: what a viewer encodes, the service passes on with a sender, and the master decodes.
func TestRoundTrip(t *testing.T) {
	c := &ICECandidate{Candidate: "candidate:2 1 tcp 1 10.0.0.1 9 typ host tcptype active", SDPMid: ptr("video"), SDPMLineIndex: ptr[uint16](1), UsernameFragment: ptr("uf")}
	data, err := Encode(Outgoing{Action: TypeICECandidate, Candidate: c})
	require.NoError(t, err)
	var w map[string]any
	require.NoError(t, json.Unmarshal(data, &w))
	relayed, err := json.Marshal(map[string]any{"senderClientId": "v9", "messageType": w["action"], "messagePayload": w["messagePayload"]})
	require.NoError(t, err)
	m, err := Decode(relayed)
	require.NoError(t, err)
	require.Equal(t, Message{Type: TypeICECandidate, SenderClientID: "v9", Candidate: c}, m)
}

func TestValidateClientID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"viewer-1", true}, {"a.b_c-D9", true}, {strings.Repeat("x", 256), true},
		{"", false}, {strings.Repeat("x", 257), false}, {"AWS_viewer", false}, {"a b", false}, {"ü", false}, {"a/b", false},
	} {
		require.Equal(t, tc.ok, ValidateClientID(tc.id) == nil, tc.id)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"senderClientId":"v","messageType":"SDP_OFFER","messagePayload":"` + b64(`{"type":"offer","sdp":"v=0"}`) + `"}`,
		`{"senderClientId":"v","messageType":"ICE_CANDIDATE","messagePayload":"` + b64(`{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}`) + `"}`,
		`{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"c","statusCode":"400"}}`,
		`{"messageType":"GO_AWAY"}`, `{"MessageType":"RECONNECT_ICE_SERVER"}`, `[]`, `null`, `{"messageType":"SDP_ANSWER","messagePayload":"!!"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			return
		}
		// A decoded message is complete for its type.
		switch m.Type {
		case TypeSDPOffer, TypeSDPAnswer:
			require.NotNil(t, m.SDP)
			require.NotEmpty(t, m.SDP.SDP)
		case TypeICECandidate:
			require.NotNil(t, m.Candidate)
		case TypeStatusResponse:
			require.NotNil(t, m.Status)
		case TypeGoAway, TypeReconnectICEServer:
		default:
			t.Fatalf("decoded an unknown type %q", m.Type)
		}
	})
}
