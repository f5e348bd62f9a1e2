package media

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestJanitorLogsLayout: at start the janitor says where recordings go, how large and how
// free their file system is, the bound on their size (a share of the file system when
// max_bytes is not set, the smaller of the two otherwise) and how long that room lasts at
// the expected segment size.
func TestJanitorLogsLayout(t *testing.T) {
	const gib = int64(1) << 30
	card := 32 * gib // a 32 GB card, 2 Mbit/s in 1-minute segments (15 MB each)
	tests := []struct {
		name     string
		maxBytes int64
		share    float64
		want     map[string]any
	}{
		{"half of the card", 0, 0.5, map[string]any{"max_bytes": "16384MiB", "room_for": 19*time.Hour + 5*time.Minute}},
		{"max_bytes below the share", 4 * gib, 0.5, map[string]any{"max_bytes": "4096MiB", "room_for": 4*time.Hour + 46*time.Minute}},
		{"no bound at all", 0, 0, map[string]any{"max_bytes": "no bound"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			dir := t.TempDir()
			j := NewJanitor(JanitorOptions{Dir: dir, Ext: "mkv", MaxBytes: tt.maxBytes, MaxShare: tt.share, MinFree: 512 << 20,
				SegmentBytes: 2_000_000 / 8 * 60, Segment: time.Minute, Log: zap.New(core),
				freeBytes: func(string) (int64, int64, error) { return 20 * gib, card, nil }})
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			j.Run(ctx) // logs, sweeps once, returns
			lines := logs.FilterMessage("recordings").All()
			require.Len(t, lines, 1, "one line says where recordings go")
			got := lines[0].ContextMap()
			require.Equal(t, dir, got["dir"])
			require.Equal(t, "32768MiB", got["filesystem_size"])
			require.Equal(t, "20480MiB", got["free"])
			require.Equal(t, "512MiB", got["min_free"])
			for k, v := range tt.want {
				require.Equal(t, v, got[k], k)
			}
			if _, ok := tt.want["room_for"]; !ok {
				require.NotContains(t, got, "room_for")
			}
		})
	}
}
