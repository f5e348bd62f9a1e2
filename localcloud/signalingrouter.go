package localcloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// Limits of the signaling service (WIRE-FORMATS §5).
const (
	maxViewersPerChannel = 10
	// goAwayGrace is how long a connection lives on after GO_AWAY (AWS: 1 min).
	goAwayGrace = time.Minute
	// signalingIdleTimeout closes a connection without messages or pings (AWS: 10 min).
	signalingIdleTimeout = 10 * time.Minute
	// signalingMaxLifetime closes any connection after an hour, as AWS does.
	signalingMaxLifetime = time.Hour
	// maxPendingForMaster bounds the messages kept for a master that is not connected.
	maxPendingForMaster = 256
	// peerQueue is each connection's outgoing queue; a client that lets it fill is dropped.
	peerQueue = 256
)

// signalingRouter stands in for the KVS signaling WebSocket service: one master (the newest
// wins) and up to 10 viewers per channel; viewer→master messages get the viewer's ID as
// senderClientId, master→viewer messages go by recipientClientId. Messages for a master that
// is not connected wait for it for the channel's message TTL, as on AWS.
type signalingRouter struct {
	log *zap.Logger
	now func() time.Time
	// onMaster is called when a master connects (localcloud points viewer.json at it).
	onMaster func(channel string)

	mu       sync.Mutex
	channels map[string]*routedChannel // by ARN
	closed   bool
	wg       sync.WaitGroup
}

type routedChannel struct {
	name    string
	ttl     time.Duration
	master  *sigPeer
	viewers map[string]*sigPeer
	pending []pendingMessage
}

type pendingMessage struct {
	data    []byte
	expires time.Time
}

// sigPeer is one client connection. It is registered (and receives messages into its
// queue) before the WebSocket handshake completes, so that a client that sees its connection
// open is already reachable.
type sigPeer struct {
	wsMu     sync.Mutex
	ws       *websocket.Conn // nil until the handshake is done
	arn      string
	clientID string // empty for the master
	send     chan []byte
	ctx      context.Context
	cancel   context.CancelFunc
	active   atomic.Int64 // unix nanoseconds of the last message or ping
	started  time.Time
}

func (p *sigPeer) role() string {
	if p.clientID == "" {
		return "master"
	}
	return "viewer " + p.clientID
}

func (p *sigPeer) touch() { p.active.Store(time.Now().UnixNano()) }

// close ends the connection: gracefully (a close frame, then the handler finishes) or at
// once. (Cancelling p.ctx first would cut the connection: coder/websocket closes it when a
// read's context ends.)
func (p *sigPeer) close(graceful bool, reason string) {
	p.wsMu.Lock()
	ws := p.ws
	p.wsMu.Unlock()
	if ws == nil {
		p.cancel() // setWS will close it
		return
	}
	if graceful {
		go func() {
			_ = ws.Close(websocket.StatusNormalClosure, reason)
			p.cancel()
		}()
		return
	}
	p.cancel()
	_ = ws.CloseNow()
}

// setWS attaches the WebSocket once the handshake is done; it reports false (and closes
// it) when the peer was closed meanwhile, e.g. replaced by a newer master.
func (p *sigPeer) setWS(ws *websocket.Conn) bool {
	p.wsMu.Lock()
	p.ws = ws
	p.wsMu.Unlock()
	if p.ctx.Err() != nil {
		_ = ws.CloseNow()
		return false
	}
	return true
}

func newSignalingRouter(log *zap.Logger, now func() time.Time, onMaster func(string)) *signalingRouter {
	return &signalingRouter{log: log, now: now, onMaster: onMaster, channels: map[string]*routedChannel{}}
}

func (r *signalingRouter) channelLocked(c signalingChannel) *routedChannel {
	rc, ok := r.channels[c.ARN]
	if !ok {
		rc = &routedChannel{name: c.Name, viewers: map[string]*sigPeer{}}
		r.channels[c.ARN] = rc
	}
	rc.ttl = time.Duration(c.MessageTTLSeconds) * time.Second
	return rc
}

// accept upgrades an authenticated request and serves the connection until it ends.
// clientID is empty for the master.
func (r *signalingRouter) accept(w http.ResponseWriter, req *http.Request, c signalingChannel, clientID string) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		serviceError(http.StatusServiceUnavailable, "ServiceUnavailableException", "localcloud is shutting down").write(w)
		return
	}
	r.wg.Add(1)
	defer r.wg.Done()
	rc := r.channelLocked(c)
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &sigPeer{arn: c.ARN, clientID: clientID, send: make(chan []byte, peerQueue), ctx: ctx, cancel: cancel, started: time.Now()}
	p.touch()
	if aerr := r.register(rc, p); aerr != nil {
		r.log.Warn("signaling connection refused", zap.String("channel", c.Name), zap.String("client_id", clientID), zap.String("reason", aerr.Message))
		aerr.write(w)
		return
	}
	ws, err := websocket.Accept(w, req, &websocket.AcceptOptions{
		// Viewers run in web pages of any origin, as with AWS.
		InsecureSkipVerify: true,
		OnPingReceived:     func(context.Context, []byte) bool { p.touch(); return true },
	})
	if err != nil {
		r.unregister(rc, p)
		r.log.Warn("WebSocket upgrade failed", zap.Error(err))
		return
	}
	ws.SetReadLimit(256 << 10) // larger than any valid message, so that oversized payloads get an answer
	if !p.setWS(ws) {
		r.unregister(rc, p)
		return
	}
	go r.writeLoop(p)
	go r.watchdog(p)
	r.readLoop(rc, p)
	r.unregister(rc, p)
	p.close(false, "")
}

// register adds the peer, replacing an older master or a viewer with the same ID; it
// refuses an 11th viewer.
func (r *signalingRouter) register(rc *routedChannel, p *sigPeer) *awsError {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return serviceError(http.StatusServiceUnavailable, "ServiceUnavailableException", "localcloud is shutting down")
	}
	var old *sigPeer
	var pending [][]byte
	if p.clientID == "" {
		old, rc.master = rc.master, p
		now := r.now()
		for _, m := range rc.pending {
			if now.Before(m.expires) {
				pending = append(pending, m.data)
			}
		}
		rc.pending = nil
	} else {
		old = rc.viewers[p.clientID]
		if old == nil && len(rc.viewers) >= maxViewersPerChannel {
			r.mu.Unlock()
			return serviceError(http.StatusBadRequest, "ClientLimitExceededException", "The channel %s already has %d viewers connected", rc.name, maxViewersPerChannel)
		}
		rc.viewers[p.clientID] = p
	}
	viewers := len(rc.viewers)
	r.mu.Unlock()
	if old != nil {
		r.log.Info("a newer connection replaces the "+old.role(), zap.String("channel", rc.name))
		old.close(true, "replaced by a newer connection")
	}
	r.log.Info("signaling client connected", zap.String("channel", rc.name), zap.String("role", p.role()), zap.Int("viewers", viewers))
	for _, m := range pending {
		r.enqueue(p, m)
	}
	if p.clientID == "" && r.onMaster != nil {
		r.onMaster(rc.name)
	}
	return nil
}

func (r *signalingRouter) unregister(rc *routedChannel, p *sigPeer) {
	r.mu.Lock()
	if p.clientID == "" && rc.master == p {
		rc.master = nil
	} else if p.clientID != "" && rc.viewers[p.clientID] == p {
		delete(rc.viewers, p.clientID)
	}
	r.mu.Unlock()
	r.log.Info("signaling client disconnected", zap.String("channel", rc.name), zap.String("role", p.role()), zap.Duration("lived", time.Since(p.started)))
}

func (r *signalingRouter) readLoop(rc *routedChannel, p *sigPeer) {
	for {
		typ, data, err := p.ws.Read(p.ctx)
		if err != nil {
			return
		}
		p.touch()
		if typ != websocket.MessageText {
			r.log.Warn("binary message ignored", zap.String("channel", rc.name), zap.String("from", p.role()))
			continue
		}
		r.route(rc, p, data)
	}
}

// route checks a client message and passes it on, or refuses it.
func (r *signalingRouter) route(rc *routedChannel, from *sigPeer, data []byte) {
	m, correlationID, fail := parseClientMessage(data)
	if fail == nil {
		fail = r.forward(rc, from, m)
	}
	if fail == nil {
		return
	}
	r.log.Warn("signaling message refused", zap.String("channel", rc.name), zap.String("from", from.role()),
		zap.String("reason", fail.Description), zap.Bool("status_response", correlationID != ""))
	if correlationID != "" {
		r.enqueue(from, statusResponse(correlationID, fail))
	}
}

func (r *signalingRouter) forward(rc *routedChannel, from *sigPeer, m clientMessage) *routeFailure {
	recipient := ""
	if m.RecipientClientID != nil {
		recipient = *m.RecipientClientID
	}
	if from.clientID == "" { // master → viewer
		if recipient == "" {
			return invalid("recipientClientId is required for messages from the master")
		}
		r.mu.Lock()
		to := rc.viewers[recipient]
		r.mu.Unlock()
		if to == nil {
			return &routeFailure{StatusCode: "400", ErrorType: "InvalidArgumentException", Description: fmt.Sprintf("The recipient %s is not connected", recipient)}
		}
		r.enqueue(to, encodeServiceMessage(serviceMessage{MessageType: *m.Action, MessagePayload: *m.MessagePayload}))
		return nil
	}
	// viewer → master
	if recipient != "" {
		return invalid("recipientClientId must not be set by a viewer")
	}
	out := encodeServiceMessage(serviceMessage{SenderClientID: from.clientID, MessageType: *m.Action, MessagePayload: *m.MessagePayload})
	r.mu.Lock()
	to := rc.master
	if to == nil {
		now := r.now()
		kept := rc.pending[:0]
		for _, p := range rc.pending {
			if now.Before(p.expires) {
				kept = append(kept, p)
			}
		}
		rc.pending = kept
		if len(rc.pending) >= maxPendingForMaster {
			r.mu.Unlock()
			return &routeFailure{StatusCode: "400", ErrorType: "ClientLimitExceededException", Description: "Too many messages are waiting for the master"}
		}
		rc.pending = append(rc.pending, pendingMessage{data: out, expires: now.Add(rc.ttl)})
	}
	r.mu.Unlock()
	if to != nil {
		r.enqueue(to, out)
	}
	return nil
}

// enqueue queues data for p; a peer whose queue is full is too slow and is dropped.
func (r *signalingRouter) enqueue(p *sigPeer, data []byte) bool {
	select {
	case p.send <- data:
		return true
	case <-p.ctx.Done():
		return false
	default:
		r.log.Warn("signaling client too slow; dropping it", zap.String("role", p.role()))
		p.close(false, "")
		return false
	}
}

func (r *signalingRouter) writeLoop(p *sigPeer) {
	for {
		select {
		case <-p.ctx.Done():
			return
		case data := <-p.send:
			ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
			err := p.ws.Write(ctx, websocket.MessageText, data)
			cancel()
			if err != nil {
				p.close(false, "")
				return
			}
		}
	}
}

// watchdog closes a connection idle for 10 minutes or open for an hour, as AWS does.
func (r *signalingRouter) watchdog(p *sigPeer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, p.active.Load())) > signalingIdleTimeout {
				p.close(true, "idle timeout")
				return
			}
			if time.Since(p.started) > signalingMaxLifetime {
				p.close(true, "connection time limit")
				return
			}
		}
	}
}

var errNoMaster = errors.New("no master is connected to the channel")

// master returns the master connected to the channel called name.
func (r *signalingRouter) master(name string) (*sigPeer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rc := range r.channels {
		if rc.name == name && rc.master != nil {
			return rc.master, nil
		}
	}
	return nil, fmt.Errorf("signaling channel %q: %w", name, errNoMaster)
}

// sendToMaster queues a raw message for the channel's master.
func (r *signalingRouter) sendToMaster(name string, data []byte) error {
	p, err := r.master(name)
	if err != nil {
		return err
	}
	if !r.enqueue(p, data) {
		return fmt.Errorf("signaling channel %q: the master's connection is closing", name)
	}
	return nil
}

// goAway sends GO_AWAY to the master and closes its connection after the grace period.
func (r *signalingRouter) goAway(name string, grace time.Duration) error {
	p, err := r.master(name)
	if err != nil {
		return err
	}
	r.enqueue(p, encodeServiceMessage(serviceMessage{MessageType: "GO_AWAY"}))
	go func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			p.close(true, "GO_AWAY")
		case <-p.ctx.Done():
		}
	}()
	return nil
}

// dropMaster cuts the master's connection without a close frame, as a network failure would.
func (r *signalingRouter) dropMaster(name string) error {
	p, err := r.master(name)
	if err != nil {
		return err
	}
	p.close(false, "")
	return nil
}

// peers reports who is connected to the channel called name.
func (r *signalingRouter) peers(name string) (master bool, viewers []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rc := range r.channels {
		if rc.name != name {
			continue
		}
		master = master || rc.master != nil
		for id := range rc.viewers {
			viewers = append(viewers, id)
		}
	}
	sort.Strings(viewers)
	return master, viewers
}

// close ends every connection and waits for their handlers.
func (r *signalingRouter) close() {
	r.mu.Lock()
	r.closed = true
	var all []*sigPeer
	for _, rc := range r.channels {
		if rc.master != nil {
			all = append(all, rc.master)
		}
		for _, v := range rc.viewers {
			all = append(all, v)
		}
	}
	r.mu.Unlock()
	for _, p := range all {
		p.close(false, "")
	}
	r.wg.Wait()
}

// validViewerID checks X-Amz-ClientId: 1 to 256 of [A-Za-z0-9_.-], not starting with AWS_.
func validViewerID(id string) bool {
	return clientIDPattern.MatchString(id) && !strings.HasPrefix(id, "AWS_")
}
