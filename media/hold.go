package media

import (
	"context"
	"sync"
)

// Hold pauses a recording without ending its file: while held, the recorder reads nothing
// from its subscription, which keeps queueing (up to its bound). Resumed, the recorder
// writes what queued meanwhile into the same file, with no gap; ended while held (its
// context done), it finalises the file at the last unit written and drops the rest.
//
// Motion recordings use it after an event ends: a new event that comes within its pre-roll
// continues the same file from where it stopped, instead of a new file that would repeat
// the seconds the previous one holds.
type Hold struct {
	mu      sync.Mutex
	held    bool
	resumed chan struct{}
}

// NewHold returns a Hold that is not held.
func NewHold() *Hold { return &Hold{resumed: make(chan struct{})} }

// Pause holds the recording.
func (h *Hold) Pause() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		h.held = true
		h.resumed = make(chan struct{})
	}
}

// Resume lets the recording go on.
func (h *Hold) Resume() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held {
		h.held = false
		close(h.resumed)
	}
}

// wait returns once the hold is not held, or with ctx's error when ctx ends first.
func (h *Hold) wait(ctx context.Context) error {
	h.mu.Lock()
	held, resumed := h.held, h.resumed
	h.mu.Unlock()
	if !held {
		return nil
	}
	select {
	case <-resumed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type holdKey struct{}

// WithHold returns a context under which a recorder's Record obeys h.
func WithHold(ctx context.Context, h *Hold) context.Context {
	return context.WithValue(ctx, holdKey{}, h)
}

// WaitHold returns at once unless ctx carries a held Hold (WithHold); then it waits until the
// hold is resumed, or returns ctx's error when ctx ends first. Recorders outside this package
// (the native KVS uploader) call it before they read their subscription, as the file
// recorders do.
func WaitHold(ctx context.Context) error {
	if h := holdFrom(ctx); h != nil {
		return h.wait(ctx)
	}
	return nil
}

func holdFrom(ctx context.Context) *Hold {
	h, _ := ctx.Value(holdKey{}).(*Hold)
	return h
}
