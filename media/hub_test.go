package media

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stream produces access units at a fixed rate with a keyframe every gop frames, on a fake
// wall clock that starts at t0.
type stream struct {
	t0    time.Time
	fps   int
	gop   int
	n     int
	size  int
	clock time.Time
}

func newStream(fps, gop int) *stream {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &stream{t0: t0, fps: fps, gop: gop, size: 1000, clock: t0}
}

func (s *stream) now() time.Time { return s.clock }

func (s *stream) next() AccessUnit {
	frame := time.Second / time.Duration(s.fps)
	au := AccessUnit{
		Data:     make([]byte, s.size),
		PTS:      time.Duration(s.n) * frame,
		DTS:      time.Duration(s.n) * frame,
		Duration: frame,
		Keyframe: s.n%s.gop == 0,
	}
	s.clock = s.t0.Add(time.Duration(s.n) * frame)
	s.n++
	return au
}

func (s *stream) publish(h *Hub, n int) {
	for range n {
		h.Publish(s.next())
	}
}

func TestLateSubscriberStartsOnCurrentGOPKeyframe(t *testing.T) {
	tests := []struct {
		name       string
		published  int
		wantFirst  uint64 // Seq of the first unit
		wantQueued int
	}{
		{"at a keyframe", 61, 61, 1},
		{"mid GOP", 75, 61, 15},
		{"end of GOP", 120, 61, 60},
		{"first GOP", 10, 1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStream(30, 60)
			h := NewHub(HubOptions{Now: s.now})
			s.publish(h, tt.published)
			sub := h.Subscribe(SubscribeOptions{Name: "late"})
			require.Equal(t, tt.wantQueued, sub.Stats().Queued)
			au, err := sub.Next(context.Background())
			require.NoError(t, err)
			require.True(t, au.Keyframe)
			require.Equal(t, tt.wantFirst, au.Seq)
			// Then the rest of the GOP in order, then live units.
			s.publish(h, 1)
			for i := 1; i <= tt.wantQueued; i++ {
				au, err := sub.Next(context.Background())
				require.NoError(t, err)
				require.Equal(t, tt.wantFirst+uint64(i), au.Seq)
			}
		})
	}
}

func TestSubscribeBeforeFirstKeyframeWaits(t *testing.T) {
	s := newStream(30, 60)
	s.n = 5 // join a camera mid-GOP: no keyframe yet
	h := NewHub(HubOptions{Now: s.now})
	sub := h.Subscribe(SubscribeOptions{})
	s.publish(h, 60)
	au, err := sub.Next(context.Background())
	require.NoError(t, err)
	require.True(t, au.Keyframe)
	require.Equal(t, uint64(56), au.Seq)
	require.Equal(t, uint64(55), sub.Stats().Dropped)
}

func TestNextKeyframeOption(t *testing.T) {
	s := newStream(30, 30)
	h := NewHub(HubOptions{Now: s.now})
	s.publish(h, 40)
	sub := h.Subscribe(SubscribeOptions{NextKeyframe: true})
	require.Zero(t, sub.Stats().Queued)
	s.publish(h, 30)
	au, err := sub.Next(context.Background())
	require.NoError(t, err)
	require.True(t, au.Keyframe)
	require.Equal(t, uint64(61), au.Seq)
}

func TestBlockedSubscriberDoesNotDelayOthers(t *testing.T) {
	s := newStream(30, 60)
	h := NewHub(HubOptions{Now: s.now, QueueFrames: 16})
	blocked := h.Subscribe(SubscribeOptions{Name: "blocked"}) // never reads until the end
	fast := h.Subscribe(SubscribeOptions{Name: "fast", QueueFrames: 1000})

	const total = 550 // ends 10 units after the last keyframe (541)
	got := make(chan []uint64, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		var seqs []uint64
		for len(seqs) < total {
			au, err := fast.Next(ctx)
			if err != nil {
				break
			}
			seqs = append(seqs, au.Seq)
		}
		got <- seqs
	}()

	done := make(chan struct{})
	go func() {
		s.publish(h, total)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Publish blocked behind a subscriber that does not read")
	}

	seqs := <-got
	require.Len(t, seqs, total, "the reading subscriber lost frames")
	for i, seq := range seqs {
		require.Equal(t, uint64(i+1), seq)
	}

	st := blocked.Stats()
	require.LessOrEqual(t, st.Queued, 16, "queue must stay bounded")
	require.Positive(t, st.Dropped)
	require.Equal(t, uint64(total), st.Dropped+uint64(st.Queued)+st.Delivered)
	// What the blocked subscriber gets after falling behind starts on a keyframe.
	au, err := blocked.Next(ctx)
	require.NoError(t, err)
	require.True(t, au.Keyframe)
	prev := au.Seq
	for blocked.Stats().Queued > 0 {
		au, err := blocked.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, prev+1, au.Seq, "no gaps inside what is delivered")
		prev = au.Seq
	}
	require.Equal(t, uint64(total), prev)
}

func TestPreRollStartsOnKeyframeAtOrBefore(t *testing.T) {
	s := newStream(10, 20) // keyframes every 2 s at t0+0s, 2s, 4s, ...
	h := NewHub(HubOptions{Now: s.now, PreRoll: 5 * time.Second})
	s.publish(h, 200) // 20 s of video; last unit at t0+19.9s
	t0 := s.t0
	tests := []struct {
		name      string
		since     time.Time
		wantStart time.Duration // wall offset of the first unit
	}{
		{"exactly on a keyframe", t0.Add(16 * time.Second), 16 * time.Second},
		{"between keyframes", t0.Add(17500 * time.Millisecond), 16 * time.Second},
		{"just before a keyframe", t0.Add(17999 * time.Millisecond), 16 * time.Second},
		{"at the pre-roll horizon", t0.Add(14900 * time.Millisecond), 14 * time.Second},
		{"older than the ring", t0.Add(time.Second), 14 * time.Second},
		{"in the future", t0.Add(time.Minute), 18 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := h.Subscribe(SubscribeOptions{Since: tt.since})
			defer sub.Close()
			au, err := sub.Next(context.Background())
			require.NoError(t, err)
			require.True(t, au.Keyframe)
			require.Equal(t, tt.wantStart, au.Wall.Sub(t0))
			require.Equal(t, au.Wall, sub.Start())
			if !tt.since.Before(t0.Add(14 * time.Second)) {
				require.False(t, au.Wall.After(tt.since), "started after the requested time")
			}
			// Everything from there to the newest unit follows without gaps.
			require.Equal(t, int(200-au.Seq), sub.Stats().Queued)
		})
	}
}

func TestRingBounds(t *testing.T) {
	tests := []struct {
		name      string
		preRoll   time.Duration
		maxBytes  int
		wantSpanL time.Duration // ring span must lie within [L, H]
		wantSpanH time.Duration
	}{
		{"no pre-roll keeps the current GOP", 0, 1 << 30, 0, 2 * time.Second},
		{"pre-roll 5s keeps 5 to 7s", 5 * time.Second, 1 << 30, 5 * time.Second, 7 * time.Second},
		{"byte cap wins over pre-roll", 30 * time.Second, 50_000, 2 * time.Second, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStream(10, 20)
			h := NewHub(HubOptions{Now: s.now, PreRoll: tt.preRoll, MaxBytes: tt.maxBytes})
			for range 300 {
				h.Publish(s.next())
				st := h.Stats()
				require.LessOrEqual(t, st.RingBytes, tt.maxBytes)
				require.LessOrEqual(t, st.RingSpan, tt.wantSpanH)
			}
			st := h.Stats()
			require.GreaterOrEqual(t, st.RingSpan, tt.wantSpanL)
			require.Equal(t, st.RingFrames*1000, st.RingBytes)
		})
	}
}

func TestKeyframelessSourceDoesNotGrowWithoutBound(t *testing.T) {
	s := newStream(30, 1<<30) // one keyframe, then never again
	h := NewHub(HubOptions{Now: s.now, MaxBytes: 100_000})
	s.publish(h, 1000)
	require.LessOrEqual(t, h.Stats().RingBytes, 100_000)
}

func TestDiscontinuityWaitsForKeyframe(t *testing.T) {
	s := newStream(30, 30)
	h := NewHub(HubOptions{Now: s.now})
	sub := h.Subscribe(SubscribeOptions{})
	s.publish(h, 10)
	h.Discontinuity()
	s.publish(h, 25) // units 10..34: 10..29 are skipped, 30 is a keyframe
	st := h.Stats()
	require.Equal(t, uint64(20), st.Skipped)
	var seqs []uint64
	for sub.Stats().Queued > 0 {
		au, err := sub.Next(context.Background())
		require.NoError(t, err)
		seqs = append(seqs, au.Seq)
		if au.Seq == 11 {
			require.True(t, au.Keyframe, "first unit after the discontinuity is a keyframe")
		}
	}
	require.Len(t, seqs, 15)
}

func TestNextHonoursContextAndClose(t *testing.T) {
	h := NewHub(HubOptions{})
	sub := h.Subscribe(SubscribeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := sub.Next(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := sub.Next(context.Background())
		require.ErrorIs(t, err, ErrClosed)
	}()
	time.Sleep(10 * time.Millisecond)
	h.Close()
	wg.Wait()

	after := h.Subscribe(SubscribeOptions{})
	_, err = after.Next(context.Background())
	require.ErrorIs(t, err, ErrClosed)
	h.Publish(AccessUnit{Keyframe: true}) // no panic, no effect
	require.Zero(t, h.Stats().Received)
}

func TestSubscriptionCloseDetaches(t *testing.T) {
	s := newStream(30, 30)
	h := NewHub(HubOptions{Now: s.now})
	sub := h.Subscribe(SubscribeOptions{Name: "viewer"})
	require.Len(t, h.Stats().Subscribers, 1)
	sub.Close()
	require.Empty(t, h.Stats().Subscribers)
	s.publish(h, 5)
	_, err := sub.Next(context.Background())
	require.ErrorIs(t, err, ErrClosed)
}
