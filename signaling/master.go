package signaling

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// ErrNotConnected is returned by sends while the Master has no connection.
var ErrNotConnected = errors.New("signaling: not connected to the signaling channel")

// Reasons for a planned reconnection (no back-off).
var (
	errGoAway = errors.New("the service sent GO_AWAY")
	errMaxAge = errors.New("the connection reached its planned lifetime (AWS closes them after 1 hour)")
)

// MasterOptions configure a Master.
type MasterOptions struct {
	Client *Client // required
	// Channel is the signaling channel's name. Required.
	Channel string
	// CreateChannel creates the channel when it does not exist (needs
	// kinesisvideo:CreateSignalingChannel); otherwise a missing channel stops Run.
	CreateChannel bool
	// Tags are given to a channel the Master creates.
	Tags map[string]string
	// OnMessage receives offers, ICE candidates, answers and status responses, one at a
	// time and in order, on a goroutine of the Master's. A slow handler loses messages
	// (counted in Stats.Dropped) once QueueSize are waiting; it never blocks the connection.
	OnMessage func(Message)
	// OnICEServers is called with the ICE servers after every successful fetch (on the
	// first connection, on RECONNECT_ICE_SERVER and when the TURN credentials expire).
	OnICEServers func([]ICEServer)
	// OnState is called on every state change. It must not block.
	OnState func(State)
	// PingInterval between WebSocket pings (default 10 s, as AWS's C SDK; the service
	// closes a connection idle for 10 min). A ping unanswered for as long drops the connection.
	PingInterval time.Duration
	// ReconnectAfter is the planned lifetime of a connection: AWS ends them after 1 hour,
	// so the Master opens a new one before (default 55 min).
	ReconnectAfter time.Duration
	// Backoff between failed attempts.
	Backoff Backoff
	// QueueSize of messages waiting for OnMessage (default 256).
	QueueSize int
	Log       *zap.Logger
}

// Master holds a channel's MASTER connection and keeps it up until its context ends.
// Its methods are safe for concurrent use.
type Master struct {
	opts    MasterOptions
	client  *Client
	log     *zap.Logger
	inbox   chan Message
	stats   counters
	running atomic.Bool

	mu        sync.Mutex
	state     State
	changed   chan struct{} // closed and replaced on every state change
	conn      *websocket.Conn
	since     time.Time
	channel   Channel
	endpoints Endpoints
	ice       []ICEServer
	iceStale  bool
	iceExpiry time.Time
	lastErr   string
}

// NewMaster returns a Master; Run connects it.
func NewMaster(opts MasterOptions) (*Master, error) {
	if opts.Client == nil {
		return nil, errors.New("signaling: NewMaster needs a Client")
	}
	if opts.Channel == "" {
		return nil, errors.New("signaling: no signaling channel name given")
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 10 * time.Second
	}
	if opts.ReconnectAfter <= 0 {
		opts.ReconnectAfter = 55 * time.Minute
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 256
	}
	opts.Backoff = opts.Backoff.withDefaults()
	if opts.Log == nil {
		opts.Log = opts.Client.log
	}
	return &Master{
		opts:     opts,
		client:   opts.Client,
		log:      opts.Log.With(zap.String("channel", opts.Channel)),
		inbox:    make(chan Message, opts.QueueSize),
		changed:  make(chan struct{}),
		iceStale: true,
	}, nil
}

// Run connects and keeps the connection up until ctx ends, when it closes the connection
// and returns nil. It returns an error only for what retrying cannot fix: the channel does
// not exist and CreateChannel is off.
func (m *Master) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("signaling: Master.Run called twice")
	}
	defer m.setState(StateStopped)
	var wg sync.WaitGroup
	defer wg.Wait()
	dctx, stopDispatch := context.WithCancel(ctx)
	defer stopDispatch()
	wg.Add(1)
	go func() { defer wg.Done(); m.dispatch(dctx) }()

	failures := 0
	for {
		if m.Stats().Connects == 0 {
			m.setState(StateConnecting)
		} else {
			m.setState(StateReconnecting)
		}
		conn, err := m.connect(ctx)
		if ctx.Err() != nil {
			if conn != nil {
				conn.CloseNow()
			}
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrChannelNotFound) && !m.opts.CreateChannel {
				m.setError(err)
				m.log.Error("signaling channel not found and creating it is off", zap.Error(err))
				return err
			}
			m.stats.connectFailures.Add(1)
			m.setError(err)
			failures++
			d := m.opts.Backoff.Delay(failures)
			m.log.Warn("signaling connection failed; retrying", zap.Error(err), zap.Duration("retry_in", d), zap.Int("attempt", failures))
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		started := time.Now()
		reason := m.serve(ctx, conn)
		if ctx.Err() != nil {
			conn.Close(websocket.StatusNormalClosure, "master stopping")
			return nil
		}
		lived := time.Since(started)
		if errors.Is(reason, errGoAway) || errors.Is(reason, errMaxAge) {
			failures = 0
			m.log.Info("reconnecting to the signaling channel", zap.String("reason", reason.Error()), zap.Duration("lived", lived))
			continue
		}
		m.setError(reason)
		if lived >= m.opts.Backoff.StableAfter {
			failures = 1
		} else {
			failures++
		}
		d := m.opts.Backoff.Delay(failures)
		m.log.Warn("signaling connection lost; reconnecting", zap.Error(reason), zap.Duration("lived", lived), zap.Duration("retry_in", d))
		if !sleep(ctx, d) {
			return nil
		}
	}
}

// connect resolves what is not known yet (channel, endpoints, ICE servers) and dials.
func (m *Master) connect(ctx context.Context) (*websocket.Conn, error) {
	m.mu.Lock()
	ch, ep := m.channel, m.endpoints
	needICE := m.iceStale || m.iceDueLocked()
	m.mu.Unlock()
	var err error
	if ch.ARN == "" {
		if ch, err = m.client.EnsureChannel(ctx, m.opts.Channel, m.opts.CreateChannel, m.opts.Tags); err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.channel = ch
		m.mu.Unlock()
	}
	if ep.WSS == "" {
		if ep, err = m.client.Endpoints(ctx, ch.ARN, RoleMaster); err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.endpoints = ep
		m.mu.Unlock()
	}
	t := Target{ChannelARN: ch.ARN, Endpoints: ep}
	if needICE {
		m.refreshICE(ctx, t)
	}
	conn, err := m.client.Dial(ctx, t)
	if err != nil {
		// The channel may have been deleted and created again, or moved: ask afresh next time.
		m.mu.Lock()
		m.channel, m.endpoints = Channel{}, Endpoints{}
		m.mu.Unlock()
		return nil, err
	}
	return conn, nil
}

// iceRetry is how soon a failed GetIceServerConfig is tried again while connected.
const iceRetry = 30 * time.Second

// iceDueLocked reports whether the TURN credentials have (nearly) expired, or a failed
// fetch is due for another try.
func (m *Master) iceDueLocked() bool {
	return !m.iceExpiry.IsZero() && time.Now().After(m.iceExpiry)
}

// refreshICE fetches the ICE servers; a failure keeps the old ones (or STUN only) and is
// retried on the next connection, or in iceRetry.
func (m *Master) refreshICE(ctx context.Context, t Target) {
	servers, err := m.client.ICEServers(ctx, t)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("GetIceServerConfig failed; keeping the previous ICE servers", zap.Error(err), zap.Duration("retry_in", iceRetry))
		m.mu.Lock()
		m.iceStale, m.iceExpiry = true, time.Now().Add(iceRetry)
		m.mu.Unlock()
		return
	}
	var ttl time.Duration
	for _, s := range servers {
		if s.TTL > 0 && (ttl == 0 || s.TTL < ttl) {
			ttl = s.TTL
		}
	}
	m.mu.Lock()
	m.ice, m.iceStale, m.iceExpiry = servers, false, time.Time{}
	if ttl > 0 {
		m.iceExpiry = time.Now().Add(ttl * 9 / 10)
	}
	m.mu.Unlock()
	m.stats.iceRefreshes.Add(1)
	m.log.Info("ICE servers fetched", zap.Int("servers", len(servers)), zap.Duration("ttl", ttl))
	if m.opts.OnICEServers != nil {
		m.opts.OnICEServers(servers)
	}
}

// serve reads the connection until it ends and returns why.
func (m *Master) serve(ctx context.Context, conn *websocket.Conn) error {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	var reasonOnce sync.Once
	var reason error
	setReason := func(err error) { reasonOnce.Do(func() { reason = err }) }

	m.mu.Lock()
	m.conn, m.since = conn, time.Now()
	t := Target{ChannelARN: m.channel.ARN, Endpoints: m.endpoints}
	m.mu.Unlock()
	n := m.stats.connects.Add(1)
	m.setState(StateConnected)
	m.log.Info("connected to the signaling channel as master", zap.String("arn", t.ChannelARN),
		zap.String("endpoint", t.Endpoints.WSS), zap.Uint64("connects", n), zap.Duration("clock_offset", m.client.ClockOffset()))
	defer func() {
		m.mu.Lock()
		m.conn, m.since = nil, time.Time{}
		m.mu.Unlock()
	}()

	// keepAlive does every ICE refresh of this connection, one at a time, so that an older
	// server list never overwrites a newer one; the reader only wakes it.
	iceWake := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.keepAlive(sctx, conn, t, setReason, iceWake)
	}()
	for {
		typ, data, err := conn.Read(sctx)
		if err != nil {
			setReason(fmt.Errorf("connection lost: %w", err))
			return reason
		}
		if typ != websocket.MessageText {
			m.drop(fmt.Errorf("%w: binary WebSocket message of %d bytes", ErrMalformed, len(data)))
			continue
		}
		msg, err := Decode(data)
		if err != nil {
			m.drop(err)
			continue
		}
		switch msg.Type {
		case TypeGoAway:
			m.stats.goAways.Add(1)
			setReason(errGoAway)
			// Connect again at once; the old connection closes on its own time.
			go conn.Close(websocket.StatusNormalClosure, "GO_AWAY")
			return reason
		case TypeReconnectICEServer:
			m.log.Info("the service asked to fetch the ICE servers again")
			m.mu.Lock()
			m.iceStale = true
			m.mu.Unlock()
			select {
			case iceWake <- struct{}{}:
			default: // a refresh is already asked for
			}
		case TypeSDPOffer, TypeSDPAnswer, TypeICECandidate:
			if msg.SenderClientID == "" {
				m.drop(fmt.Errorf("%w: %s without senderClientId: the master cannot answer it", ErrMalformed, msg.Type))
				continue
			}
			m.deliver(msg)
		case TypeStatusResponse:
			m.log.Warn("the signaling service refused a message", zap.String("correlation_id", msg.Status.CorrelationID),
				zap.String("error_type", msg.Status.ErrorType), zap.String("status", msg.Status.StatusCode), zap.String("description", msg.Status.Description))
			m.deliver(msg)
		}
	}
}

// keepAlive pings, fetches the ICE servers again before the TURN credentials expire or when
// iceWake says the service asked for it, and ends the connection at its planned lifetime.
func (m *Master) keepAlive(ctx context.Context, conn *websocket.Conn, t Target, setReason func(error), iceWake <-chan struct{}) {
	ping := time.NewTicker(m.opts.PingInterval)
	defer ping.Stop()
	age := time.NewTimer(m.opts.ReconnectAfter)
	defer age.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-iceWake:
			m.refreshICE(ctx, t)
		case <-age.C:
			setReason(errMaxAge)
			conn.Close(websocket.StatusNormalClosure, "reconnecting before the 1-hour limit")
			return
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, m.opts.PingInterval)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				setReason(fmt.Errorf("no answer to a WebSocket ping within %s: %w", m.opts.PingInterval, err))
				conn.CloseNow()
				return
			}
			m.mu.Lock()
			due := m.iceDueLocked()
			m.mu.Unlock()
			if due {
				m.refreshICE(ctx, t)
			}
		}
	}
}

func (m *Master) deliver(msg Message) {
	select {
	case m.inbox <- msg:
	default:
		m.drop(fmt.Errorf("OnMessage is not keeping up: %d messages waiting, %s from %q lost", cap(m.inbox), msg.Type, msg.SenderClientID))
	}
}

func (m *Master) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-m.inbox:
			m.stats.in.Add(1)
			if m.opts.OnMessage != nil {
				m.opts.OnMessage(msg)
			}
		}
	}
}

// drop counts and logs a message that cannot be used.
func (m *Master) drop(err error) {
	n := m.stats.dropped.Add(1)
	m.setError(err)
	m.log.Warn("dropped a signaling message", zap.Error(err), zap.Uint64("dropped", n))
}

// SendAnswer sends an SDP answer to the viewer viewerID.
func (m *Master) SendAnswer(ctx context.Context, viewerID, sdp string) error {
	return m.Send(ctx, Outgoing{Action: TypeSDPAnswer, RecipientClientID: viewerID, SDP: &SessionDescription{Type: "answer", SDP: sdp}})
}

// SendCandidate sends one of the master's ICE candidates to the viewer viewerID.
func (m *Master) SendCandidate(ctx context.Context, viewerID string, c ICECandidate) error {
	return m.Send(ctx, Outgoing{Action: TypeICECandidate, RecipientClientID: viewerID, Candidate: &c})
}

// Send sends a message to a viewer; the master must name the recipient. The write is
// bounded by ctx's deadline or 10 s; cancelling ctx does not cut the shared connection.
func (m *Master) Send(ctx context.Context, o Outgoing) error {
	if o.RecipientClientID == "" {
		return fmt.Errorf("signaling: %s: a master must name the recipient viewer (RecipientClientID)", o.Action)
	}
	data, err := Encode(o)
	if err != nil {
		return fmt.Errorf("signaling: %w", err)
	}
	m.mu.Lock()
	conn := m.conn
	m.mu.Unlock()
	if conn == nil {
		return ErrNotConnected
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	// coder/websocket closes the connection when a write's context ends; a viewer's
	// context must not take the channel's connection down with it.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := conn.Write(wctx, websocket.MessageText, data); err != nil {
		return fmt.Errorf("signaling: sending %s to viewer %q: %w", o.Action, o.RecipientClientID, err)
	}
	m.stats.out.Add(1)
	return nil
}

// WaitConnected returns once the Master is connected, or ctx's error.
func (m *Master) WaitConnected(ctx context.Context) error {
	for {
		m.mu.Lock()
		up, changed := m.conn != nil, m.changed
		m.mu.Unlock()
		if up {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// State returns the current state.
func (m *Master) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Channel returns the channel as last described (zero before the first connection).
func (m *Master) Channel() Channel {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.channel
}

// ICEServers returns the ICE servers last fetched (nil before the first fetch).
func (m *Master) ICEServers() []ICEServer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ICEServer(nil), m.ice...)
}

// Stats returns a snapshot of the counters.
func (m *Master) Stats() Stats {
	m.mu.Lock()
	s := Stats{State: m.state, ConnectedSince: m.since, LastError: m.lastErr}
	m.mu.Unlock()
	s.Connects = m.stats.connects.Load()
	if s.Connects > 0 {
		s.Reconnects = s.Connects - 1
	}
	s.ConnectFailures = m.stats.connectFailures.Load()
	s.GoAways = m.stats.goAways.Load()
	s.ICERefreshes = m.stats.iceRefreshes.Load()
	s.MessagesIn = m.stats.in.Load()
	s.MessagesOut = m.stats.out.Load()
	s.Dropped = m.stats.dropped.Load()
	s.ClockOffset = m.client.ClockOffset()
	return s
}

func (m *Master) setState(s State) {
	m.mu.Lock()
	if m.state == s {
		m.mu.Unlock()
		return
	}
	m.state = s
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	if m.opts.OnState != nil {
		m.opts.OnState(s)
	}
}

func (m *Master) setError(err error) {
	m.mu.Lock()
	m.lastErr = err.Error()
	m.mu.Unlock()
}

// sleep waits d or until ctx ends; it reports whether the wait ran its course.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
