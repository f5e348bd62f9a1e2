package kvsupload

import (
	"context"
	"testing"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// TestRecorderObeysHold: a motion recording held after its event ends (media.Hold) reads
// nothing from its subscription, so nothing past the event reaches the spool — and KVS —
// unless a new event resumes it. Ended while held, it spools nothing more.
func TestRecorderObeysHold(t *testing.T) {
	aus := rebase(encode(t, "160x120", 15, 4, 15))
	sp, err := OpenSpool(SpoolOptions{Dir: t.TempDir(), Log: zaptest.NewLogger(t)})
	require.NoError(t, err)
	defer sp.Close()
	rec, err := NewRecorder(RecorderOptions{Spool: sp})
	require.NoError(t, err)
	hub := media.NewHub(media.HubOptions{QueueFrames: 4096})
	defer hub.Close()
	sub := hub.Subscribe(media.SubscribeOptions{Name: "kvs-native", QueueFrames: 4096})

	hold := media.NewHold()
	hold.Pause()
	ctx, cancel := context.WithCancel(media.WithHold(context.Background(), hold))
	done := make(chan error, 1)
	go func() { done <- rec.Record(ctx, sub) }()
	for _, au := range aus {
		hub.Publish(au)
	}
	require.Never(t, func() bool {
		subs := hub.Stats().Subscribers
		return len(subs) == 1 && subs[0].Delivered > 0
	}, 300*time.Millisecond, 10*time.Millisecond, "a held recorder reads nothing")
	cancel()
	require.NoError(t, <-done)
	require.Zero(t, sp.Stats().Appended, "ended while held: nothing spooled")
}
