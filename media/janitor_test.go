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
			tt.opts.freeBytes = func(string) (int64, int64, error) { return tt.free, 1 << 40, nil }
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
	j := NewJanitor(JanitorOptions{Dir: dir, Ext: "mkv", MinFree: 100, freeBytes: func(string) (int64, int64, error) { return free, 1 << 40, nil }})
	j.Sweep(time.Now())
	require.True(t, j.Paused())
	free = 1000
	j.Sweep(time.Now())
	require.False(t, j.Paused())
	// The real statfs works on this machine.
	got, total, err := diskSpace(dir)
	require.NoError(t, err)
	require.Positive(t, got)
	require.GreaterOrEqual(t, total, got)
}

// TestJanitorSurvivesClockSteps steps the wall clock after segments were written (NTP's
// first sync on a device without a real-time clock, or a correction back): no segment is
// deleted before it has really been kept for max_age, and the oldest still go first.
func TestJanitorSurvivesClockSteps(t *testing.T) {
	synced := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		before time.Time // the wall clock while the segments are written
		step   time.Duration
	}{
		{"30 minutes forward", synced, 30 * time.Minute},
		{"30 minutes back", synced, -30 * time.Minute},
		{"from 1970 to the real time (first NTP sync)", time.Unix(600, 0).UTC(), synced.Sub(time.Unix(600, 0))},
		{"from the last shutdown a week back", synced.Add(-7 * 24 * time.Hour), 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			wall, mono := tt.before, time.Duration(0)
			j := NewJanitor(JanitorOptions{Dir: dir, Ext: "mkv", MaxAge: 20 * time.Minute,
				Now: func() time.Time { return wall }, Elapsed: func() time.Duration { return mono },
				freeBytes: func(string) (int64, int64, error) { return 1 << 40, 1 << 41, nil }})
			write := func(name string) string {
				p := filepath.Join(dir, name+".mkv")
				require.NoError(t, os.WriteFile(p, make([]byte, 100), 0o644))
				require.NoError(t, os.Chtimes(p, wall, wall))
				j.Sweep(wall) // a new segment kicks the janitor
				return p
			}
			advance := func(d time.Duration) { wall, mono = wall.Add(d), mono+d }

			a := write("a")
			advance(time.Minute)
			b := write("b")
			advance(time.Minute)
			wall = wall.Add(tt.step) // the clock steps; the monotonic clock does not
			c := write("c")
			advance(time.Minute)
			d := write("d")

			advance(10 * time.Minute) // a is 13 minutes old
			require.Zero(t, j.Sweep(wall))
			require.Equal(t, []bool{true, true, true, true}, remaining(t, []string{a, b, c, d}), "nothing is older than max_age")

			advance(8 * time.Minute) // a is 21 minutes old, b 20, c 19
			require.Equal(t, 1, j.Sweep(wall))
			require.Equal(t, []bool{false, true, true, true}, remaining(t, []string{a, b, c, d}), "the oldest goes first, and only it")
			advance(2 * time.Minute)
			require.Equal(t, 2, j.Sweep(wall))
			require.Equal(t, []bool{false, false, false, true}, remaining(t, []string{a, b, c, d}))
		})
	}
}

// TestJanitorFloorAndShare: the free-space floor covers two segments, and max_share bounds
// the recordings to a share of their file system.
func TestJanitorFloorAndShare(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		opts        JanitorOptions
		free, total int64
		want        []bool
		wantPause   bool
	}{
		{"floor raised to two expected segments", JanitorOptions{MinFree: 100, SegmentBytes: 1500}, 2500, 1 << 30, []bool{false, true, true, true, true}, false},
		{"floor raised to two of the largest segments", JanitorOptions{MinFree: 100}, 1500, 1 << 30, []bool{false, true, true, true, true}, false},
		{"half of the file system", JanitorOptions{MaxShare: 0.5}, 1 << 30, 6000, []bool{false, false, true, true, true}, false},
		{"max_bytes smaller than the share", JanitorOptions{MaxShare: 0.5, MaxBytes: 1500}, 1 << 30, 1 << 30, []bool{false, false, false, false, true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeSegments(t, dir, 5, 1000, now.Add(-5*time.Minute))
			tt.opts.Dir, tt.opts.Ext = dir, "mkv"
			// Deleting a file frees its size.
			free := tt.free
			tt.opts.freeBytes = func(string) (int64, int64, error) {
				n := 0
				for _, ok := range remaining(t, files) {
					if !ok {
						n++
					}
				}
				return free + int64(n)*1000, tt.total, nil
			}
			j := NewJanitor(tt.opts)
			j.Sweep(now)
			require.Equal(t, tt.want, remaining(t, files))
			require.Equal(t, tt.wantPause, j.Paused())
		})
	}
}
