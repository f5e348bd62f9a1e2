package gst

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRunWakesOnCancel checks that Run, which waits on the bus without polling, ends when
// its context does, in every phase of a run, and leaves no goroutine behind.
func TestRunWakesOnCancel(t *testing.T) {
	const live = "videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 ! appsink name=out sync=false"
	tests := []struct {
		name  string
		drain time.Duration
		// cancelAfterFrames cancels once this many frames arrived; 0 cancels before Run.
		cancelAfterFrames int
	}{
		{"cancelled before run", 0, 0},
		{"quiet bus while playing", 0, 10},
		{"quiet bus, draining", 5 * time.Second, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 3 {
				p, err := Parse(live, Options{Name: "wake", Drain: tt.drain})
				require.NoError(t, err)
				ctx, cancel := context.WithCancel(context.Background())
				frames := make(chan struct{}, 64)
				require.NoError(t, p.OnSample("out", func(Sample) {
					select {
					case frames <- struct{}{}:
					default:
					}
				}))
				if tt.cancelAfterFrames == 0 {
					cancel()
				}
				done := make(chan error, 1)
				go func() { done <- p.Run(ctx) }()
				for range tt.cancelAfterFrames {
					select {
					case <-frames:
					case err := <-done:
						t.Fatalf("Run ended before it was cancelled: %v", err)
					case <-time.After(30 * time.Second):
						t.Fatal("no frame from a live test source")
					}
				}
				cancel()
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(30 * time.Second):
					t.Fatal("Run did not end after its context was cancelled: nothing woke the wait on the bus")
				}
			}
			// GStreamer's streaming threads keep goroutines of their own once they have called
			// into Go (cgo callbacks), so the count of goroutines says nothing: look for
			// goroutines in the pipeline's code, or started by this test, instead.
			require.Eventually(t, func() bool { return len(leaked()) == 0 }, 10*time.Second, 20*time.Millisecond,
				"goroutines left behind:\n%s", strings.Join(leaked(), "\n\n"))
		})
	}
}

// leaked returns the stacks of goroutines that run the pipeline's code (the wait on the
// bus, the wake-up) or that a run of this test started.
func leaked() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "media/gst.(*Pipeline)") || strings.Contains(g, "created by github.com/edgecam/edgecam/media/gst.TestRunWakesOnCancel.func") {
			out = append(out, g)
		}
	}
	return out
}
