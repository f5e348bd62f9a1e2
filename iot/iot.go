// Package iot is edgecam's MQTT 5 connection to AWS IoT Core (or localcloud): TLS with a
// client certificate, ALPN x-amzn-mqtt-ca on port 443, reconnection with jittered back-off,
// subscriptions restored after a reconnect, a persistent queue of QoS 1 publishes that
// outlives outages and restarts, no TLS while the clock cannot be right, and connection
// errors explained for the user.
package iot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/edgecam/edgecam/internal/backoff"
	"github.com/edgecam/edgecam/internal/clock"
	"go.uber.org/zap"
)

// ALPN is the protocol AWS IoT Core expects for MQTT on port 443.
const ALPN = "x-amzn-mqtt-ca"

// Options configure a connection.
type Options struct {
	// Endpoint is host[:port]; the port defaults to 8883.
	Endpoint string
	// RootCAs verifies the endpoint's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// Certificate authenticates the device (claim or device certificate).
	Certificate tls.Certificate
	// ClientID must match the policy's iot:Connect resource (≤ 128 bytes).
	ClientID string
	// KeepAlive is between 30 s and 1200 s on AWS IoT; default 60 s.
	KeepAlive time.Duration
	// ConnectTimeout bounds the first connection (default 30 s); later reconnects never stop.
	ConnectTimeout time.Duration
	// OnConnect runs (in its own goroutine) after every connection, the first included.
	OnConnect func()
	// Will, when set, is published by the broker if the connection drops without a clean
	// disconnect (AWS IoT Core supports last-will messages, QoS 0 or 1).
	Will *Message
	// Queue, when set, is delivered over this connection: its messages are sent in order,
	// each removed once the broker acknowledged it (see Queue).
	Queue *Queue
	// Clock is the clock TLS and the plausibility check read (default the system's). No
	// TLS handshake is tried while it reads a time before this build or well before the
	// certificate was issued: certificates cannot be checked, and the error says so.
	Clock clock.Clock
	Log   *zap.Logger
}

// Message is a received PUBLISH.
type Message struct {
	Topic   string
	Payload []byte
}

// Conn is a managed MQTT connection.
type Conn struct {
	opts Options
	log  *zap.Logger
	cm   *autopaho.ConnectionManager
	stop context.CancelFunc
	// queueDone is closed when the queue's delivery ends (nil without a queue).
	queueDone chan struct{}

	mu       sync.Mutex
	filters  map[string]byte // subscriptions to restore after a reconnect
	handlers []handler
	lastErr  error
	up       bool
}

type handler struct {
	filter string
	fn     func(Message)
}

// Endpoint returns the URL for an endpoint written as host[:port].
func endpointURL(endpoint string) (*url.URL, error) {
	if endpoint == "" {
		return nil, errors.New("no endpoint: set iot.endpoint (AWS: <prefix>-ats.iot.<region>.amazonaws.com)")
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		host, port = endpoint, "8883"
	}
	if host == "" {
		return nil, fmt.Errorf("endpoint %q has no host", endpoint)
	}
	return &url.URL{Scheme: "tls", Host: net.JoinHostPort(host, port)}, nil
}

// Dial connects and waits for the first connection. It fails with a *ConnectError saying
// what to check when no connection comes up within ConnectTimeout; after that, the
// connection is kept up until Close.
func Dial(ctx context.Context, opts Options) (*Conn, error) {
	u, err := endpointURL(opts.Endpoint)
	if err != nil {
		return nil, err
	}
	if opts.ClientID == "" || len(opts.ClientID) > 128 {
		return nil, fmt.Errorf("MQTT client ID %q must be 1 to 128 bytes", opts.ClientID)
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 60 * time.Second
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	tlsCfg := &tls.Config{
		RootCAs:      opts.RootCAs,
		Certificates: []tls.Certificate{opts.Certificate},
		MinVersion:   tls.VersionTLS12,
		Time:         opts.Clock.Now,
	}
	floors := clockFloors(opts.Certificate)
	if u.Port() == "443" {
		tlsCfg.NextProtos = []string{ALPN}
	}
	c := &Conn{opts: opts, log: opts.Log.With(zap.String("endpoint", u.Host), zap.String("client_id", opts.ClientID)), filters: map[string]byte{}}

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop = stop
	// A refusal that retrying cannot fix ends the first dial at once.
	fatal := make(chan error, 1)
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     uint16(opts.KeepAlive / time.Second),
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              func(attempt int) time.Duration { return backoff.Delay(2*time.Second, time.Minute, attempt) },
		ConnectTimeout:                10 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			c.mu.Lock()
			c.up = true
			c.lastErr = nil
			c.mu.Unlock()
			c.log.Info("MQTT connected")
			go c.restore(runCtx)
		},
		OnConnectionDown: func() bool {
			c.mu.Lock()
			c.up = false
			c.mu.Unlock()
			c.log.Warn("MQTT connection lost; reconnecting")
			return true
		},
		OnConnectError: func(err error) {
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			c.log.Debug("MQTT connect attempt failed", zap.Error(err))
			var ce *ConnectError
			if errors.As(explain(u.Host, opts.ClientID, opts.ConnectTimeout, err), &ce) && !ce.Temporary {
				select {
				case fatal <- err:
				default:
				}
			}
		},
		WillMessage: will(opts.Will),
		// Called before each attempt: no TLS while the clock cannot be right.
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if err := clock.Plausible(opts.Clock.Now(), floors...); err != nil {
				return nil, err
			}
			return cp, nil
		},
		ClientConfig: paho.ClientConfig{
			ClientID: opts.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				c.dispatch(Message{Topic: pr.Packet.Topic, Payload: pr.Packet.Payload})
				return true, nil
			}},
		},
	}
	cm, err := autopaho.NewConnection(runCtx, cfg)
	if err != nil {
		stop()
		return nil, err
	}
	c.cm = cm

	waitCtx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	go func() {
		select {
		case <-fatal:
			cancel()
		case <-waitCtx.Done():
		}
	}()
	if err := cm.AwaitConnection(waitCtx); err != nil {
		stop()
		<-cm.Done()
		c.mu.Lock()
		last := c.lastErr
		c.mu.Unlock()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, explain(u.Host, opts.ClientID, opts.ConnectTimeout, last)
	}
	if opts.Queue != nil {
		c.queueDone = make(chan struct{})
		go func() {
			defer close(c.queueDone)
			c.deliverQueue(runCtx, opts.Queue)
		}()
	}
	return c, nil
}

// certificateSlack is how far before its certificate's NotBefore the clock may read and
// still be believed: issuers back-date certificates a little, and clocks drift.
const certificateSlack = 24 * time.Hour

// clockFloors are the times the clock must have passed: a day before the device's
// certificate was issued (it exists, so that time has come).
func clockFloors(cert tls.Certificate) []clock.Instant {
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if leaf == nil {
		return nil
	}
	return []clock.Instant{{At: leaf.NotBefore.Add(-certificateSlack), What: "a day before the device certificate was issued"}}
}

func will(m *Message) *paho.WillMessage {
	if m == nil {
		return nil
	}
	return &paho.WillMessage{Topic: m.Topic, Payload: m.Payload, QoS: 1}
}

// restore re-subscribes after a reconnect (the session starts clean), then calls OnConnect.
func (c *Conn) restore(ctx context.Context) {
	c.mu.Lock()
	filters := make([]string, 0, len(c.filters))
	for f := range c.filters {
		filters = append(filters, f)
	}
	c.mu.Unlock()
	if len(filters) > 0 {
		if err := c.subscribe(ctx, filters); err != nil {
			c.log.Warn("re-subscribing after reconnect failed", zap.Error(err))
		}
	}
	if c.opts.OnConnect != nil {
		c.opts.OnConnect()
	}
}

// Handle calls fn for every message on a topic matching filter. Register handlers before
// subscribing, so that no reply is missed.
func (c *Conn) Handle(filter string, fn func(Message)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers = append(c.handlers, handler{filter, fn})
}

func (c *Conn) dispatch(m Message) {
	c.mu.Lock()
	var fns []func(Message)
	for _, h := range c.handlers {
		if Match(h.filter, m.Topic) {
			fns = append(fns, h.fn)
		}
	}
	c.mu.Unlock()
	for _, fn := range fns {
		fn(m)
	}
}

// maxFiltersPerSubscribe is AWS IoT Core's limit.
const maxFiltersPerSubscribe = 8

// Subscribe subscribes with QoS 1 and waits for the broker's acknowledgement; the
// subscriptions are restored after every reconnect.
func (c *Conn) Subscribe(ctx context.Context, filters ...string) error {
	if err := c.subscribe(ctx, filters); err != nil {
		return err
	}
	c.mu.Lock()
	for _, f := range filters {
		c.filters[f] = 1
	}
	c.mu.Unlock()
	return nil
}

func (c *Conn) subscribe(ctx context.Context, filters []string) error {
	for len(filters) > 0 {
		n := min(len(filters), maxFiltersPerSubscribe)
		batch := filters[:n]
		filters = filters[n:]
		sub := &paho.Subscribe{}
		for _, f := range batch {
			sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
		}
		ack, err := c.cm.Subscribe(ctx, sub)
		if ack != nil {
			// paho reports refused filters as an error; the reason codes say which.
			for i, code := range ack.Reasons {
				if code >= 0x80 && i < len(batch) {
					return fmt.Errorf("subscribe to %s refused (reason 0x%02x): check that the certificate's policy allows iot:Subscribe and iot:Receive on it", batch[i], code)
				}
			}
		}
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", strings.Join(batch, ", "), err)
		}
	}
	return nil
}

// Publish sends a message and, for QoS 1, waits for the broker's acknowledgement.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte, qos byte) error {
	if qos > 1 {
		return errors.New("AWS IoT Core supports QoS 0 and 1 only")
	}
	resp, err := c.cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: qos})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	if resp != nil && resp.ReasonCode >= 0x80 {
		return fmt.Errorf("publish to %s refused (reason 0x%02x): check that the certificate's policy allows iot:Publish on it", topic, resp.ReasonCode)
	}
	return nil
}

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

// Close disconnects cleanly and stops reconnecting (and delivering the queue: what is left
// in it goes out on the next connection).
func (c *Conn) Close(ctx context.Context) error {
	err := c.cm.Disconnect(ctx)
	c.stop()
	select {
	case <-c.cm.Done():
	case <-ctx.Done():
	}
	if c.queueDone != nil {
		select {
		case <-c.queueDone:
		case <-ctx.Done():
		}
	}
	if errors.Is(err, autopaho.ConnectionDownError) {
		return nil
	}
	return err
}

// Match reports whether an MQTT topic matches a filter with + and # wildcards.
func Match(filter, topic string) bool {
	// Wildcards at the first level do not match topics starting with $ (MQTT 4.7.2).
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) || (f != "+" && f != ts[i]) {
			return false
		}
	}
	return len(fs) == len(ts)
}
