package media

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func writeSegments(t *testing.T, dir string, n int, size int, start time.Time) []string {
	t.Helper()
	var out []string
	for i := range n {
		p := filepath.Join(dir, start.Add(time.Duration(i)*time.Minute).UTC().Format("20060102T150405Z")+".mkv")
		require.NoError(t, os.WriteFile(p, make([]byte, size), 0o644))
		mod := start.Add(time.Duration(i) * time.Minute)
		require.NoError(t, os.Chtimes(p, mod, mod))
		out = append(out, p)
	}
	return out
}

func remaining(t *testing.T, files []string) []bool {
	out := make([]bool, len(files))
	for i, f := range files {
		_, err := os.Stat(f)
		out[i] = err == nil
	}
	return out
}

func TestJanitor(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		opts      JanitorOptions
		free      int64
		want      []bool
		wantPause bool
	}{
		{"age", JanitorOptions{MaxAge: 150 * time.Second}, 1 << 40, []bool{false, false, false, true, true}, false},
		{"total size", JanitorOptions{MaxBytes: 2500}, 1 << 40, []bool{false, false, false, true, true}, false},
		{"free-disk floor deletes all but the newest and pauses", JanitorOptions{MinFree: 1 << 30}, 1 << 20, []bool{false, false, false, false, true}, true},
		{"within bounds", JanitorOptions{MaxAge: time.Hour, MaxBytes: 1 << 20, MinFree: 1 << 20}, 1 << 30, []bool{true, true, true, true, true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeSegments(t, dir, 5, 1000, now.Add(-5*time.Minute))
			other := filepath.Join(dir, "notes.txt")
			require.NoError(t, os.WriteFile(other, []byte("keep"), 0o644))
			tt.opts.Dir, tt.opts.Ext = dir, "mkv"
			tt.opts.freeBytes = func(string) (int64, error) { return tt.free, nil }
			j := NewJanitor(tt.opts)
			j.Sweep(now)
			require.Equal(t, tt.want, remaining(t, files))
			require.FileExists(t, other, "only segment files are touched")
			require.Equal(t, tt.wantPause, j.Paused())
		})
	}
}

func TestJanitorResumes(t *testing.T) {
	dir := t.TempDir()
	free := int64(0)
	j := NewJanitor(JanitorOptions{Dir: dir, Ext: "mkv", MinFree: 100, freeBytes: func(string) (int64, error) { return free, nil }})
	j.Sweep(time.Now())
	require.True(t, j.Paused())
	free = 1000
	j.Sweep(time.Now())
	require.False(t, j.Paused())
	// The real statfs works on this machine.
	got, err := freeBytes(dir)
	require.NoError(t, err)
	require.Positive(t, got)
}
