package localcloud

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

func dialWS(t *testing.T, u string) (*websocket.Conn, *http.Response, error) {
	return dialWSWith(t, u, nil)
}

func dialWSWith(t *testing.T, u string, hc *http.Client) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc})
	if err == nil {
		t.Cleanup(func() { conn.CloseNow() })
	}
	return conn, resp, err
}

// sigClient is a raw signaling client: it sends JSON as given and collects what arrives.
type sigClient struct {
	t    *testing.T
	conn *websocket.Conn
	in   chan map[string]any
	done chan error
}

func connectSig(t *testing.T, c *Cloud, channel, clientID string) *sigClient {
	t.Helper()
	arn, ok := c.SignalingChannelARN(channel)
	require.True(t, ok, channel)
	wss := "ws://" + strings.TrimPrefix(c.KVSEndpoint(), "http://") + "/signaling"
	conn, _, err := dialWS(t, presign(t, wss, arn, clientID, viewerCreds(t, c), time.Now()))
	require.NoError(t, err)
	s := &sigClient{t: t, conn: conn, in: make(chan map[string]any, 64), done: make(chan error, 1)}
	go func() {
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				s.done <- err
				return
			}
			var m map[string]any
			if json.Unmarshal(data, &m) != nil {
				m = map[string]any{"raw": string(data)}
			}
			s.in <- m
		}
	}()
	return s
}

func (s *sigClient) send(msg string) {
	s.t.Helper()
	require.NoError(s.t, s.conn.Write(context.Background(), websocket.MessageText, []byte(msg)))
}

func (s *sigClient) next() map[string]any {
	s.t.Helper()
	select {
	case m := <-s.in:
		return m
	case err := <-s.done:
		s.t.Fatalf("connection closed while waiting for a message: %v", err)
	case <-time.After(5 * time.Second):
		s.t.Fatal("no message within 5 s")
	}
	return nil
}

func (s *sigClient) nothing(d time.Duration) {
	s.t.Helper()
	select {
	case m := <-s.in:
		s.t.Fatalf("unexpected message %v", m)
	case <-time.After(d):
	}
}

func (s *sigClient) closed() error {
	s.t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(5 * time.Second):
		s.t.Fatal("connection still open after 5 s")
		return nil
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

const offerPayload = `{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}`

func TestSignalingRouting(t *testing.T) {
	c := start(t, Options{})
	master := connectSig(t, c, DefaultSignalingChannel, "")
	v1 := connectSig(t, c, DefaultSignalingChannel, "viewer-1")
	v2 := connectSig(t, c, DefaultSignalingChannel, "viewer.2")
	require.Eventually(t, func() bool {
		m, v := c.SignalingPeers(DefaultSignalingChannel)
		return m && len(v) == 2
	}, 5*time.Second, 10*time.Millisecond)

	// AWS's JavaScript SDK spells the keys in camelCase, its C SDK capitalises them.
	offer := b64(offerPayload)
	v1.send(`{"action":"SDP_OFFER","messagePayload":"` + offer + `"}`)
	require.Equal(t, map[string]any{"senderClientId": "viewer-1", "messageType": "SDP_OFFER", "messagePayload": offer}, master.next())
	cand := b64(`{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0}`)
	v2.send(`{"action":"ICE_CANDIDATE","MessagePayload":"` + cand + `","CorrelationId":"c-1"}`)
	require.Equal(t, map[string]any{"senderClientId": "viewer.2", "messageType": "ICE_CANDIDATE", "messagePayload": cand}, master.next())

	answer := b64(`{"type":"answer","sdp":"v=0\r\n"}`)
	master.send(`{"action":"SDP_ANSWER","recipientClientId":"viewer-1","messagePayload":"` + answer + `","correlationId":"a-1"}`)
	require.Equal(t, map[string]any{"messageType": "SDP_ANSWER", "messagePayload": answer}, v1.next())
	master.send(`{"action":"ICE_CANDIDATE","RecipientClientId":"viewer.2","MessagePayload":"` + cand + `"}`)
	require.Equal(t, map[string]any{"messageType": "ICE_CANDIDATE", "messagePayload": cand}, v2.next())

	master.nothing(100 * time.Millisecond) // no STATUS_RESPONSE for messages that went through
	v1.nothing(0)
	v2.nothing(0)
	require.NoError(t, master.conn.Ping(ctxT(t)), "the service answers pings")
}

func TestSignalingStatusResponse(t *testing.T) {
	c := start(t, Options{})
	master := connectSig(t, c, DefaultSignalingChannel, "")
	viewer := connectSig(t, c, DefaultSignalingChannel, "v")
	require.Eventually(t, func() bool { m, v := c.SignalingPeers(DefaultSignalingChannel); return m && len(v) == 1 }, 5*time.Second, 10*time.Millisecond)
	p := b64(offerPayload)
	for _, tc := range []struct {
		name     string
		from     *sigClient
		msg      string
		contains string // in the description; "" means no STATUS_RESPONSE is expected
	}{
		{"viewer names a recipient", viewer, `{"action":"SDP_OFFER","recipientClientId":"x","messagePayload":"` + p + `","correlationId":"c1"}`, "must not be set by a viewer"},
		{"viewer names a recipient, no correlation ID", viewer, `{"action":"SDP_OFFER","recipientClientId":"x","messagePayload":"` + p + `"}`, ""},
		{"master names no recipient", master, `{"action":"SDP_ANSWER","messagePayload":"` + p + `","correlationId":"c2"}`, "recipientClientId is required"},
		{"recipient not connected", master, `{"action":"SDP_ANSWER","recipientClientId":"gone","messagePayload":"` + p + `","CorrelationId":"c3"}`, "not connected"},
		{"recipient not connected, no correlation ID", master, `{"action":"SDP_ANSWER","recipientClientId":"gone","messagePayload":"` + p + `"}`, ""},
		{"payload over 10 KB", viewer, `{"action":"SDP_OFFER","messagePayload":"` + strings.Repeat("A", 10*1024+4) + `","correlationId":"c4"}`, "limit"},
		{"payload not base64", viewer, `{"action":"SDP_OFFER","messagePayload":"%%%","correlationId":"c5"}`, "base64"},
		{"unknown action", viewer, `{"action":"HELLO","messagePayload":"` + p + `","correlationId":"c6"}`, "Unsupported action"},
		{"no payload", viewer, `{"action":"SDP_OFFER","correlationId":"c7"}`, "messagePayload is required"},
		{"not JSON", viewer, `{"action":`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.from.send(tc.msg)
			if tc.contains == "" {
				tc.from.nothing(150 * time.Millisecond)
			} else {
				m := tc.from.next()
				require.Equal(t, "STATUS_RESPONSE", m["messageType"])
				sr := m["statusResponse"].(map[string]any)
				var msg map[string]any
				require.NoError(t, json.Unmarshal([]byte(tc.msg), &msg))
				want := msg["correlationId"]
				if want == nil {
					want = msg["CorrelationId"]
				}
				require.Equal(t, want, sr["correlationId"])
				require.Equal(t, "400", sr["statusCode"], "AWS sends the status code as a string")
				require.NotEmpty(t, sr["errorType"])
				require.Contains(t, sr["description"], tc.contains)
			}
			// Nothing reached the other side, and the connection is still good.
			master.nothing(0)
			viewer.nothing(0)
			require.NoError(t, tc.from.conn.Ping(ctxT(t)))
		})
	}

	// A payload of exactly 10 KB goes through.
	big := strings.Repeat("A", 10*1024)
	viewer.send(`{"action":"SDP_OFFER","messagePayload":"` + big + `","correlationId":"c8"}`)
	require.Equal(t, big, master.next()["messagePayload"])
}

func TestSignalingViewerLimit(t *testing.T) {
	c := start(t, Options{})
	var viewers []*sigClient
	for i := range 10 {
		viewers = append(viewers, connectSig(t, c, DefaultSignalingChannel, fmt.Sprintf("v%d", i)))
	}
	require.Eventually(t, func() bool { _, v := c.SignalingPeers(DefaultSignalingChannel); return len(v) == 10 }, 5*time.Second, 10*time.Millisecond)

	arn, _ := c.SignalingChannelARN(DefaultSignalingChannel)
	wss := "ws://" + strings.TrimPrefix(c.KVSEndpoint(), "http://") + "/signaling"
	_, resp, err := dialWS(t, presign(t, wss, arn, "v10", viewerCreds(t, c), time.Now()))
	require.Error(t, err, "the 11th viewer is refused")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "ClientLimitExceededException", resp.Header.Get("x-amzn-ErrorType"))

	// A viewer that connects again with its ID replaces its old connection.
	again := connectSig(t, c, DefaultSignalingChannel, "v3")
	require.Error(t, viewers[3].closed())
	master := connectSig(t, c, DefaultSignalingChannel, "")
	require.Eventually(t, func() bool { m, _ := c.SignalingPeers(DefaultSignalingChannel); return m }, 5*time.Second, 10*time.Millisecond)
	master.send(`{"action":"SDP_ANSWER","recipientClientId":"v3","messagePayload":"` + b64(`{"type":"answer","sdp":"x"}`) + `"}`)
	require.Equal(t, "SDP_ANSWER", again.next()["messageType"])

	// Once a viewer leaves, another may join.
	viewers[0].conn.Close(websocket.StatusNormalClosure, "")
	require.Eventually(t, func() bool { _, v := c.SignalingPeers(DefaultSignalingChannel); return len(v) == 9 }, 5*time.Second, 10*time.Millisecond)
	connectSig(t, c, DefaultSignalingChannel, "v10")
}

func TestSignalingNewestMasterWins(t *testing.T) {
	c := start(t, Options{})
	old := connectSig(t, c, DefaultSignalingChannel, "")
	require.Eventually(t, func() bool { m, _ := c.SignalingPeers(DefaultSignalingChannel); return m }, 5*time.Second, 10*time.Millisecond)
	newer := connectSig(t, c, DefaultSignalingChannel, "")
	require.Error(t, old.closed(), "the older master's connection is closed")
	viewer := connectSig(t, c, DefaultSignalingChannel, "v")
	require.Eventually(t, func() bool { _, v := c.SignalingPeers(DefaultSignalingChannel); return len(v) == 1 }, 5*time.Second, 10*time.Millisecond)
	viewer.send(`{"action":"SDP_OFFER","messagePayload":"` + b64(offerPayload) + `"}`)
	require.Equal(t, "v", newer.next()["senderClientId"])
}

func TestSignalingMessagesWaitForTheMaster(t *testing.T) {
	c := start(t, Options{})
	viewer := connectSig(t, c, DefaultSignalingChannel, "early")
	require.Eventually(t, func() bool { _, v := c.SignalingPeers(DefaultSignalingChannel); return len(v) == 1 }, 5*time.Second, 10*time.Millisecond)
	viewer.send(`{"action":"SDP_OFFER","messagePayload":"` + b64(offerPayload) + `","correlationId":"x"}`)
	viewer.nothing(100 * time.Millisecond) // kept for the master (message TTL), not refused
	master := connectSig(t, c, DefaultSignalingChannel, "")
	m := master.next()
	require.Equal(t, "early", m["senderClientId"])
	require.Equal(t, "SDP_OFFER", m["messageType"])
}

func TestSignalingHooks(t *testing.T) {
	c := start(t, Options{})
	require.Error(t, c.SignalingGoAway(DefaultSignalingChannel), "no master yet")
	require.Error(t, c.DropSignalingMaster(DefaultSignalingChannel))
	master := connectSig(t, c, DefaultSignalingChannel, "")
	require.Eventually(t, func() bool { m, _ := c.SignalingPeers(DefaultSignalingChannel); return m }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, c.SignalingGoAway(DefaultSignalingChannel))
	require.Equal(t, map[string]any{"messageType": "GO_AWAY"}, master.next())
	require.NoError(t, c.SignalingReconnectICEServer(DefaultSignalingChannel))
	require.Equal(t, map[string]any{"messageType": "RECONNECT_ICE_SERVER"}, master.next())
	require.NoError(t, c.SendSignalingMasterRaw(DefaultSignalingChannel, []byte("not json")))
	require.Equal(t, map[string]any{"raw": "not json"}, master.next())

	require.NoError(t, c.DropSignalingMaster(DefaultSignalingChannel))
	require.Error(t, master.closed())
	require.Eventually(t, func() bool { m, _ := c.SignalingPeers(DefaultSignalingChannel); return !m }, 5*time.Second, 10*time.Millisecond)
}
