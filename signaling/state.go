package signaling

import (
	"sync/atomic"
	"time"
)

// State is where a Master's connection stands.
type State int

// States of a Master.
const (
	StateIdle         State = iota // Run not called yet
	StateConnecting                // first connection under way
	StateConnected                 // the WebSocket is up
	StateReconnecting              // lost (or replaced) the connection; connecting again
	StateStopped                   // Run returned
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateStopped:
		return "stopped"
	}
	return "unknown"
}

// Stats is a snapshot of a Master's counters, for logs and metrics.
type Stats struct {
	State State
	// ConnectedSince is when the current connection opened (zero when not connected).
	ConnectedSince time.Time
	// Connects counts connections opened; Reconnects those after the first.
	Connects, Reconnects uint64
	// ConnectFailures counts attempts that did not get a connection.
	ConnectFailures uint64
	// GoAways counts GO_AWAY messages; ICERefreshes successful GetIceServerConfig calls.
	GoAways, ICERefreshes uint64
	// MessagesIn counts messages handed to OnMessage; MessagesOut messages sent.
	MessagesIn, MessagesOut uint64
	// Dropped counts incoming messages that were malformed or could not be delivered.
	Dropped uint64
	// ClockOffset is the correction applied to the local clock when signing.
	ClockOffset time.Duration
	// LastError is the most recent connection or message error ("" if none).
	LastError string
}

// counters are a Master's live counters.
type counters struct {
	connects, connectFailures, goAways, iceRefreshes atomic.Uint64
	in, out, dropped                                 atomic.Uint64
}
