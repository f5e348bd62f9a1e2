package logging

import (
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RateLimit bounds how often one warning repeats: the same warning (same logger, message
// and string or error fields — a GStreamer element saying the same thing again) is written
// at most Burst times per Interval. When it comes back after its window, the record says
// how many were suppressed ("suppressed" field). Other levels pass untouched.
type RateLimit struct {
	Burst    int           // 0: 5
	Interval time.Duration // 0: 1 minute
	// Now returns the time; nil means time.Now.
	Now func() time.Time
}

// maxKeys bounds the memory the limiter uses: beyond it, windows that have ended are
// forgotten, and when none has, the oldest one goes.
const maxKeys = 512

type window struct {
	start      time.Time
	n          int // records in this window, written or not
	suppressed int
}

type limiterState struct {
	mu   sync.Mutex
	seed maphash.Seed
	keys map[uint64]*window
}

type rateLimitCore struct {
	zapcore.Core
	opts    RateLimit
	state   *limiterState
	context []zapcore.Field // fields added with With: part of the key
}

// NewRateLimitCore wraps core so that repeated warnings are rate-limited as o says.
func NewRateLimitCore(core zapcore.Core, o RateLimit) zapcore.Core {
	if o.Burst <= 0 {
		o.Burst = 5
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &rateLimitCore{Core: core, opts: o, state: &limiterState{seed: maphash.MakeSeed(), keys: map[uint64]*window{}}}
}

func (c *rateLimitCore) With(fields []zapcore.Field) zapcore.Core {
	ctx := make([]zapcore.Field, 0, len(c.context)+len(fields))
	ctx = append(append(ctx, c.context...), fields...)
	return &rateLimitCore{Core: c.Core.With(fields), opts: c.opts, state: c.state, context: ctx}
}

func (c *rateLimitCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !c.Enabled(ent.Level) {
		return ce
	}
	return ce.AddCore(ent, c)
}

func (c *rateLimitCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if ent.Level != zapcore.WarnLevel {
		return c.Core.Write(ent, fields)
	}
	key := c.key(ent, fields)
	now := c.opts.Now()
	s := c.state
	s.mu.Lock()
	w := s.keys[key]
	var suppressed int
	switch {
	case w == nil:
		s.evict(now, c.opts.Interval)
		w = &window{start: now}
		s.keys[key] = w
	case now.Sub(w.start) >= c.opts.Interval:
		suppressed = w.suppressed
		*w = window{start: now}
	}
	w.n++
	drop := w.n > c.opts.Burst
	if drop {
		w.suppressed++
	}
	s.mu.Unlock()
	if drop {
		return nil
	}
	if suppressed > 0 {
		fields = append(fields[:len(fields):len(fields)], zap.Int("suppressed", suppressed),
			zap.String("suppressed_note", fmt.Sprintf("%d more like this in the %s before", suppressed, c.opts.Interval)))
	}
	if w.n == c.opts.Burst {
		fields = append(fields[:len(fields):len(fields)], zap.String("rate_limit",
			fmt.Sprintf("repeats of this warning are held back for the rest of %s", c.opts.Interval)))
	}
	return c.Core.Write(ent, fields)
}

// key identifies "the same warning": logger name, message, and every string or error field.
// Numbers and times are left out, so that a warning counting something is still the same.
func (c *rateLimitCore) key(ent zapcore.Entry, fields []zapcore.Field) uint64 {
	var h maphash.Hash
	h.SetSeed(c.state.seed)
	h.WriteString(ent.LoggerName)
	h.WriteByte(0)
	h.WriteString(ent.Message)
	for _, list := range [][]zapcore.Field{c.context, fields} {
		for _, f := range list {
			switch f.Type {
			case zapcore.StringType:
				h.WriteByte(0)
				h.WriteString(f.Key)
				h.WriteByte('=')
				h.WriteString(f.String)
			case zapcore.ErrorType:
				if err, ok := f.Interface.(error); ok && err != nil {
					h.WriteByte(0)
					h.WriteString(f.Key)
					h.WriteByte('=')
					h.WriteString(err.Error())
				}
			}
		}
	}
	return h.Sum64()
}

// evict makes room for a new key. Called with s.mu held.
func (s *limiterState) evict(now time.Time, interval time.Duration) {
	if len(s.keys) < maxKeys {
		return
	}
	var oldest uint64
	var oldestStart time.Time
	for k, w := range s.keys {
		if now.Sub(w.start) >= interval {
			delete(s.keys, k)
			continue
		}
		if oldestStart.IsZero() || w.start.Before(oldestStart) {
			oldest, oldestStart = k, w.start
		}
	}
	if len(s.keys) >= maxKeys {
		delete(s.keys, oldest)
	}
}
