package media

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkHubPublish measures one Publish with n subscribers that drain concurrently.
func BenchmarkHubPublish(b *testing.B) {
	for _, n := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			s := newStream(30, 60)
			s.size = 8000 // ~2 Mbit/s at 30 fps
			h := NewHub(HubOptions{PreRoll: 5 * time.Second, QueueFrames: 256})
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := range n {
				sub := h.Subscribe(SubscribeOptions{Name: fmt.Sprint(i)})
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if _, err := sub.Next(ctx); err != nil {
							return
						}
					}
				}()
			}
			units := make([]AccessUnit, 600)
			for i := range units {
				units[i] = s.next()
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				au := units[i%len(units)]
				au.Wall = time.Time{}
				h.Publish(au)
				i++
			}
			b.StopTimer()
			cancel()
			h.Close()
			wg.Wait()
		})
	}
}

// BenchmarkHubSubscribe measures a late join: copying the current GOP into a new queue.
func BenchmarkHubSubscribe(b *testing.B) {
	s := newStream(30, 60)
	h := NewHub(HubOptions{Now: s.now, PreRoll: 5 * time.Second})
	s.publish(h, 359) // end of a GOP: the backlog is 59 units
	b.ReportAllocs()
	for b.Loop() {
		h.Subscribe(SubscribeOptions{}).Close()
	}
}

// BenchmarkHubPreRoll measures a motion-recording start replaying 5 s of pre-roll.
func BenchmarkHubPreRoll(b *testing.B) {
	s := newStream(30, 60)
	h := NewHub(HubOptions{Now: s.now, PreRoll: 5 * time.Second})
	s.publish(h, 600)
	since := s.clock.Add(-5 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		h.Subscribe(SubscribeOptions{Since: since}).Close()
	}
}
