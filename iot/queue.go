package iot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/edgecam/edgecam/internal/atomicfile"
	"github.com/edgecam/edgecam/internal/backoff"
	"go.uber.org/zap"
)

// DefaultQueueMaxBytes bounds a Queue when QueueOptions.MaxBytes is 0.
const DefaultQueueMaxBytes = 8 << 20

// QueueOptions configure a persistent publish queue.
type QueueOptions struct {
	// Dir holds one file per queued message (created 0700).
	Dir string
	// MaxBytes bounds the messages kept (default DefaultQueueMaxBytes): beyond it the
	// oldest are dropped, counted and logged, so that a device offline for weeks does not
	// fill its card.
	MaxBytes int64
	Log      *zap.Logger
}

// Queue keeps QoS 1 messages on disk until the broker acknowledges them, so that they
// survive a connection outage and a restart of the process, and are delivered at least
// once and in order, each with the payload (and timestamps) it had when it was queued.
//
// Each message is one file named after a sequence number (the order never depends on the
// clock, which a device without a real-time clock may step), written atomically and
// fsynced before Enqueue returns. A Conn given the queue (Options.Queue) sends the oldest
// message, waits for its PUBACK, removes it and goes on with the next; a message whose
// PUBACK did not come is sent again, on this connection or the next.
//
// autopaho's own file queue is not used: it orders by modification time, does not fsync,
// and forgets a message once written to the socket, which loses it when the connection or
// the process dies before the PUBACK and the broker keeps no session.
type Queue struct {
	dir      string
	maxBytes int64
	log      *zap.Logger

	deliver sync.Mutex // one Conn delivers at a time

	mu        sync.Mutex
	next      uint64
	entries   []queued // oldest first
	bytes     int64
	dropped   uint64
	delivered uint64
	changed   chan struct{} // closed and replaced on every change
}

type queued struct {
	seq  uint64
	size int64
}

// queuedMessage is a queued message's file.
type queuedMessage struct {
	Topic   string    `json:"topic"`
	QoS     byte      `json:"qos"`
	Payload []byte    `json:"payload"`
	Queued  time.Time `json:"queued"`
}

const queueExt = ".msg"

// OpenQueue opens (or creates) the queue in opts.Dir with the messages left there.
func OpenQueue(opts QueueOptions) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("iot: publish queue: no directory given")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultQueueMaxBytes
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("iot: publish queue %s: %w", opts.Dir, err)
	}
	q := &Queue{dir: opts.Dir, maxBytes: opts.MaxBytes, log: opts.Log, changed: make(chan struct{}), next: 1}
	des, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("iot: publish queue %s: %w", opts.Dir, err)
	}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
			_ = os.Remove(filepath.Join(opts.Dir, name)) // a write cut short by a crash
			continue
		}
		seq, ok := parseQueueName(name)
		if !ok || de.IsDir() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		q.entries = append(q.entries, queued{seq: seq, size: info.Size()})
		q.bytes += info.Size()
		q.next = max(q.next, seq+1)
	}
	sort.Slice(q.entries, func(i, j int) bool { return q.entries[i].seq < q.entries[j].seq })
	if n := len(q.entries); n > 0 {
		q.log.Info("publish queue holds messages from before", zap.String("dir", opts.Dir), zap.Int("messages", n))
	}
	return q, nil
}

func queueName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, queueExt) }

func parseQueueName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, queueExt)
	if !ok || len(base) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(base, 10, 64)
	return seq, err == nil
}

// Dir returns the queue's directory.
func (q *Queue) Dir() string { return q.dir }

// Enqueue stores a message durably (QoS 0 or 1); it is sent when a connection is up.
func (q *Queue) Enqueue(topic string, payload []byte, qos byte) error {
	if qos > 1 {
		return errors.New("iot: AWS IoT Core supports QoS 0 and 1 only")
	}
	if topic == "" {
		return errors.New("iot: publish queue: empty topic")
	}
	data, err := json.Marshal(queuedMessage{Topic: topic, QoS: qos, Payload: payload, Queued: time.Now().UTC()})
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	seq := q.next
	if err := atomicfile.Write(filepath.Join(q.dir, queueName(seq)), data, 0o600); err != nil {
		return fmt.Errorf("iot: publish queue: %w", err)
	}
	q.next++
	q.entries = append(q.entries, queued{seq: seq, size: int64(len(data))})
	q.bytes += int64(len(data))
	for q.bytes > q.maxBytes && len(q.entries) > 1 {
		old := q.entries[0]
		q.removeLocked(old.seq)
		q.dropped++
		q.log.Warn("publish queue full: dropped its oldest message", zap.String("dir", q.dir),
			zap.Int64("max_bytes", q.maxBytes), zap.Uint64("dropped", q.dropped))
	}
	q.changedLocked()
	return nil
}

// Len returns how many messages wait.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// Stats returns the messages waiting, delivered and dropped (queue full) since Open.
func (q *Queue) Stats() (waiting int, delivered, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries), q.delivered, q.dropped
}

// WaitEmpty returns once no message waits, or ctx's error.
func (q *Queue) WaitEmpty(ctx context.Context) error {
	for {
		q.mu.Lock()
		empty, changed := len(q.entries) == 0, q.changed
		q.mu.Unlock()
		if empty {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (q *Queue) changedLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// oldest returns the oldest message, or ok false and a channel closed at the next change.
func (q *Queue) oldest() (seq uint64, m queuedMessage, ok bool, wait <-chan struct{}, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.entries) == 0 {
		return 0, m, false, q.changed, nil
	}
	seq = q.entries[0].seq
	data, err := os.ReadFile(filepath.Join(q.dir, queueName(seq)))
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err == nil && m.Topic == "" {
		err = errors.New("no topic")
	}
	if err != nil {
		return seq, m, false, nil, fmt.Errorf("queued message %s: %w", queueName(seq), err)
	}
	return seq, m, true, nil, nil
}

// done removes a delivered (or undeliverable) message.
func (q *Queue) done(seq uint64, delivered bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.removeLocked(seq)
	if delivered {
		q.delivered++
	}
	q.changedLocked()
}

func (q *Queue) removeLocked(seq uint64) {
	for i, e := range q.entries {
		if e.seq == seq {
			q.entries = append(q.entries[:i], q.entries[i+1:]...)
			q.bytes -= e.size
			break
		}
	}
	if err := os.Remove(filepath.Join(q.dir, queueName(seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.log.Warn("publish queue: a sent message could not be removed; it may be sent again", zap.Error(err))
	}
}

// deliverQueue sends the queue's messages over c, oldest first, one at a time, each removed
// once the broker acknowledged it, until ctx ends.
func (c *Conn) deliverQueue(ctx context.Context, q *Queue) {
	q.deliver.Lock()
	defer q.deliver.Unlock()
	failures := 0
	for ctx.Err() == nil {
		seq, m, ok, wait, err := q.oldest()
		if err != nil {
			c.log.Error("publish queue: dropped an unreadable message", zap.Error(err))
			q.done(seq, false)
			continue
		}
		if !ok {
			select {
			case <-wait:
			case <-ctx.Done():
			}
			continue
		}
		if err := c.cm.AwaitConnection(ctx); err != nil {
			return
		}
		pubCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := c.cm.Publish(pubCtx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS})
		cancel()
		switch {
		case err == nil:
			q.done(seq, true)
			failures = 0
		case resp != nil && resp.ReasonCode >= 0x80:
			// Sending it again would be refused again and hold up everything behind it.
			c.log.Error("the broker refused a queued message; dropped it — check that the certificate's policy allows iot:Publish on its topic",
				zap.String("topic", m.Topic), zap.String("reason", fmt.Sprintf("0x%02x", resp.ReasonCode)))
			q.done(seq, false)
		default:
			if ctx.Err() != nil {
				return
			}
			failures++
			d := backoff.Delay(500*time.Millisecond, 30*time.Second, failures)
			c.log.Debug("queued message not acknowledged; sending it again", zap.String("topic", m.Topic), zap.Error(err), zap.Duration("retry_in", d))
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
}
