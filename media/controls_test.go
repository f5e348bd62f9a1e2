package media

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/stretchr/testify/require"
)

// meter counts what a subscription receives.
type meter struct {
	mu     sync.Mutex
	bytes  int
	frames int
	keys   []time.Time
}

func (m *meter) run(ctx context.Context, sub *Subscription) {
	for {
		au, err := sub.Next(ctx)
		if err != nil {
			return
		}
		m.mu.Lock()
		m.bytes += len(au.Data)
		m.frames++
		if au.Keyframe {
			m.keys = append(m.keys, au.Wall)
		}
		m.mu.Unlock()
	}
}

// window measures bytes/s and frames/s over d.
func (m *meter) window(d time.Duration) (bytesPerSec, fps float64) {
	m.mu.Lock()
	b0, f0 := m.bytes, m.frames
	m.mu.Unlock()
	time.Sleep(d)
	m.mu.Lock()
	defer m.mu.Unlock()
	return float64(m.bytes-b0) / d.Seconds(), float64(m.frames-f0) / d.Seconds()
}

func runEncoded(t *testing.T, pattern string) (*Source, *meter) {
	t.Helper()
	m := config.Default().Media
	m.Source = config.Source{Kind: config.SourceCustom, Format: config.FormatRaw, Width: 640, Height: 360, Framerate: 30,
		Pipeline: "videotestsrc is-live=true pattern=" + pattern + " ! video/x-raw,width=640,height=360,framerate=30/1"}
	m.Encoder.Kind = config.EncoderX264
	m.Encoder.BitrateKbps = 2000
	m.Analysis.Enabled = false
	plan, err := ResolvePlan(m, gst.Probe{})
	require.NoError(t, err)
	hub := NewHub(HubOptions{})
	src, err := NewSource(SourceOptions{Plan: plan, Hub: hub})
	require.NoError(t, err)
	meter := &meter{}
	ctx, cancel := context.WithCancel(context.Background())
	sub := hub.Subscribe(SubscribeOptions{QueueFrames: 1000})
	done := make(chan error, 2)
	go func() { done <- src.Run(ctx) }()
	go func() { meter.run(ctx, sub); done <- nil }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	require.Eventually(t, func() bool { return src.FrameCount() > 15 }, 10*time.Second, 20*time.Millisecond)
	return src, meter
}

// TestX264BitrateAtRunTime lowers the bitrate of a running x264 encoder and measures the
// output: the bytes per second must drop.
func TestX264BitrateAtRunTime(t *testing.T) {
	src, m := runEncoded(t, "snow") // noise: x264 needs every bit it is given
	time.Sleep(time.Second)
	high, _ := m.window(3 * time.Second)
	require.NoError(t, src.SetBitrate(300))
	require.Equal(t, 300, src.Bitrate())
	time.Sleep(time.Second) // let the rate control settle
	low, _ := m.window(3 * time.Second)
	t.Logf("x264 output: %.0f kbit/s at 2000 kbit/s, %.0f kbit/s at 300 kbit/s", high*8/1000, low*8/1000)
	require.Less(t, low, high*0.5, "lowering the bitrate lowers the output")
	require.InDelta(t, 300, low*8/1000, 150, "the output follows the new target")
}

// TestFramerateAtRunTime halves and thirds the frame rate: the output follows, and the GOP
// keeps its length in seconds (keyframes are forced when key-int-max would stretch it).
func TestFramerateAtRunTime(t *testing.T) {
	src, m := runEncoded(t, "ball")
	_, fps := m.window(2 * time.Second)
	require.InDelta(t, 30, fps, 5)
	require.NoError(t, src.SetFramerate(10))
	time.Sleep(time.Second)
	m.mu.Lock()
	m.keys = nil
	m.mu.Unlock()
	_, fps = m.window(5 * time.Second)
	require.InDelta(t, 10, fps, 3)
	m.mu.Lock()
	keys := append([]time.Time(nil), m.keys...)
	m.mu.Unlock()
	require.GreaterOrEqual(t, len(keys), 2, "keyframes keep coming at 10 fps")
	for i := 1; i < len(keys); i++ {
		require.LessOrEqual(t, keys[i].Sub(keys[i-1]), 2500*time.Millisecond, "GOP stays about 2 s")
	}
	require.ErrorContains(t, src.SetFramerate(60), "out of range")
}

func TestPassthroughControlsAreNoOps(t *testing.T) {
	m := config.Default().Media
	m.Source = config.Source{Kind: config.SourceRTSP, URL: "rtsp://127.0.0.1:1/x", Transport: config.TransportTCP, Width: 640, Height: 360, Framerate: 15}
	plan, err := ResolvePlan(m, gst.Probe{})
	require.NoError(t, err)
	src, err := NewSource(SourceOptions{Plan: plan, Hub: NewHub(HubOptions{})})
	require.NoError(t, err)
	require.False(t, src.Encoding())
	require.ErrorIs(t, src.SetBitrate(500), ErrNotEncoding)
	require.ErrorIs(t, src.SetFramerate(5), ErrNotEncoding)
	require.ErrorIs(t, src.ForceKeyframe(), ErrNotEncoding)
}
