package localcloud

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/zap"
)

// principal is who a connected client is, from its TLS client certificate.
type principal struct {
	certID string
	claim  bool
	thing  string // the thing the certificate is attached to (device certificates)
	conn   *mqtt.Client
}

// broker is the embedded MQTT 5 broker: TLS with client-certificate authentication, an
// AWS-like policy per certificate, and the fleet provisioning responder inline.
type broker struct {
	srv   *mqtt.Server
	reg   *registry
	fleet *fleetResponder
	log   *zap.Logger
	addr  string

	mu         sync.Mutex
	principals map[string]principal // by client ID
}

func newBroker(ln net.Listener, tlsCfg *tls.Config, reg *registry, fleet *fleetResponder, log *zap.Logger) (*broker, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1 // AWS IoT Core has no QoS 2
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	b := &broker{srv: srv, reg: reg, fleet: fleet, log: log, addr: ln.Addr().String(), principals: map[string]principal{}}
	if err := srv.AddHook(&policyHook{b: b}, nil); err != nil {
		return nil, err
	}
	if err := srv.AddListener(listeners.NewNet("mqtts", tls.NewListener(ln, tlsCfg))); err != nil {
		return nil, err
	}
	for _, f := range FleetRequestFilters {
		if err := srv.Subscribe(f, 1, b.onFleetRequest); err != nil {
			return nil, fmt.Errorf("broker: subscribe %s: %w", f, err)
		}
	}
	return b, nil
}

func (b *broker) serve() error { return b.srv.Serve() }

func (b *broker) close() error { return b.srv.Close() }

// onFleetRequest answers a fleet provisioning request on the requester's connection only,
// as AWS does, and only if it subscribed to the reply topic.
func (b *broker) onFleetRequest(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
	b.mu.Lock()
	p := b.principals[pk.Origin]
	b.mu.Unlock()
	topic, payload, ok := b.fleet.handle(fleetRequest{Topic: pk.TopicName, Payload: pk.Payload, ClientID: pk.Origin, ClaimCertID: p.certID})
	if !ok {
		return
	}
	b.log.Info("fleet provisioning", zap.String("client_id", pk.Origin), zap.String("request", pk.TopicName), zap.String("reply", topic))
	b.reply(pk.Origin, topic, payload)
}

func (b *broker) reply(clientID, topic string, payload []byte) {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok {
		return
	}
	subs := b.srv.Topics.Subscribers(topic)
	if _, subscribed := subs.Subscriptions[clientID]; !subscribed {
		b.log.Warn("fleet provisioning reply dropped: the client did not subscribe to it first", zap.String("client_id", clientID), zap.String("topic", topic))
		return
	}
	err := cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
	})
	if err != nil {
		b.log.Warn("fleet provisioning reply failed", zap.String("client_id", clientID), zap.Error(err))
	}
}

// observe delivers every message published on topics matching filter (for tests and for
// dry-run's console); it sees what the devices send.
func (b *broker) observe(filter string, id int, fn func(topic string, payload []byte)) error {
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, bytes.Clone(pk.Payload))
	})
}

// disconnect drops a connected client (tests use it to exercise reconnects).
func (b *broker) disconnect(clientID string) bool {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok {
		return false
	}
	_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
	return true
}

// policyHook authenticates clients by certificate and applies AWS-like policies: the claim
// certificate may only use the fleet provisioning topics; a device certificate must connect
// with its thing's name as client ID and may only use that thing's topics.
type policyHook struct {
	mqtt.HookBase
	b *broker
}

func (h *policyHook) ID() string { return "edgecam-policy" }

func (h *policyHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnDisconnect
}

func (h *policyHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	if cl.Net.Inline {
		return true
	}
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
		return false
	}
	id := certificateID(tc.ConnectionState().PeerCertificates[0].Raw)
	rec, ok := h.b.reg.cert(id)
	log := h.b.log.With(zap.String("client_id", cl.ID), zap.String("certificate_id", id[:12]))
	switch {
	case !ok:
		log.Warn("connection refused: unknown certificate")
		return false
	case rec.Status != StatusActive:
		log.Warn("connection refused: certificate not active", zap.String("status", rec.Status))
		return false
	}
	p := principal{certID: id, claim: rec.Claim, conn: cl}
	if !rec.Claim {
		if !slices.Contains(rec.Things, cl.ID) {
			log.Warn("connection refused: the client ID must be the thing name the certificate is attached to", zap.Strings("things", rec.Things))
			return false
		}
		p.thing = cl.ID
	}
	h.b.mu.Lock()
	h.b.principals[cl.ID] = p
	h.b.mu.Unlock()
	log.Info("client connected", zap.Bool("claim", p.claim))
	return true
}

// OnDisconnect forgets the connection's principal, unless a newer connection with the same
// client ID has taken it over (mochi may disconnect the old one before marking it taken over).
func (h *policyHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.b.mu.Lock()
	if p, ok := h.b.principals[cl.ID]; ok && p.conn == cl {
		delete(h.b.principals, cl.ID)
	}
	h.b.mu.Unlock()
}

func (h *policyHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	h.b.mu.Lock()
	p, ok := h.b.principals[cl.ID]
	h.b.mu.Unlock()
	if !ok {
		return false
	}
	if p.claim {
		return claimAllowed(topic, write)
	}
	return strings.HasPrefix(topic, "edgecam/"+p.thing+"/") || strings.HasPrefix(topic, "$aws/things/"+p.thing+"/")
}

// claimAllowed is the claim certificate's policy: publish requests, receive their replies.
// Unlike a typical AWS claim policy it allows every template name, so that a wrong name
// gets the service's ResourceNotFound answer instead of a refused subscription.
func claimAllowed(topic string, write bool) bool {
	if rest, ok := strings.CutPrefix(topic, topicTemplates); ok {
		name, _, _ := strings.Cut(rest, "/")
		if name != "" && name != "+" && name != "#" {
			topic = topicTemplates + "T" + strings.TrimPrefix(rest, name)
		}
	}
	for _, base := range []string{topicCreateFromCSR, topicCreateKeys, topicTemplates + "T/provision/"} {
		for _, format := range []string{"json", "cbor"} {
			req := base + format
			if write && topic == req {
				return true
			}
			if !write && (topic == req+"/accepted" || topic == req+"/rejected" || topic == req+"/+") {
				return true
			}
		}
	}
	return false
}
