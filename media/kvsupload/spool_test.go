package kvsupload

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testFragment makes a fragment whose bytes say which one it is.
func testFragment(i, size int) *Fragment {
	c := make([]byte, size)
	for j := range c {
		c[j] = byte(i*7 + j)
	}
	copy(c, fmt.Sprintf("cluster-%06d", i))
	return &Fragment{Timecode: testT0.UnixMilli() + int64(i)*2000, Wall: testT0.Add(time.Duration(i) * 2 * time.Second),
		Frames: 30, Duration: 2 * time.Second, Header: []byte("header-A"), Cluster: c}
}

func fragmentNo(t *testing.T, f Fragment) int {
	var i int
	_, err := fmt.Sscanf(string(f.Cluster[:14]), "cluster-%06d", &i)
	require.NoError(t, err)
	return i
}

// waiting reads every waiting fragment in order and returns their numbers.
func waiting(t *testing.T, s *Spool) []int {
	var out []int
	after := uint64(0)
	for {
		info, ok := s.Next(after)
		if !ok {
			return out
		}
		f, err := s.Read(info.Seq)
		require.NoError(t, err)
		require.Equal(t, info.Timecode, f.Timecode)
		require.Equal(t, []byte("header-A"), f.Header)
		n := fragmentNo(t, f)
		require.Equal(t, testFragment(n, len(f.Cluster)).Cluster, f.Cluster)
		out = append(out, n)
		after = info.Seq
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func segFiles(t *testing.T, dir string) []string {
	names, err := filepath.Glob(filepath.Join(dir, segPrefix+"*"))
	require.NoError(t, err)
	slices.Sort(names)
	return names
}

func TestSpoolTornTail(t *testing.T) {
	// A spool with 5 fragments, the first 2 PERSISTED; the last record is then cut at every byte.
	src := t.TempDir()
	s, err := OpenSpool(SpoolOptions{Dir: src})
	require.NoError(t, err)
	var lastStart int64
	for i := 1; i <= 5; i++ {
		if i == 5 {
			lastStart = s.Stats().WrittenBytes
		}
		require.NoError(t, s.Append(testFragment(i, 300+i)))
	}
	require.NoError(t, s.Done(1))
	require.NoError(t, s.Done(2))
	require.NoError(t, s.Close())
	files := segFiles(t, src)
	require.Len(t, files, 1)
	full, err := os.ReadFile(files[0])
	require.NoError(t, err)
	acked, err := os.ReadFile(filepath.Join(src, ackedFile))
	require.NoError(t, err)

	for cut := lastStart; cut <= int64(len(full)); cut++ {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(files[0])), full[:cut], 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(dir, ackedFile), acked, 0o600))
		s, err := OpenSpool(SpoolOptions{Dir: dir})
		require.NoError(t, err, "cut at %d", cut)
		want := seq(3, 4)
		if cut == int64(len(full)) {
			want = seq(3, 5)
		}
		require.Equal(t, want, waiting(t, s), "cut at %d", cut)
		torn := cut - lastStart // the partial last record
		if cut == int64(len(full)) {
			torn = 0
		}
		require.Equal(t, torn, s.Stats().TruncatedBytes)
		// Appending after a torn tail, then reopening: nothing lost, nothing twice.
		require.NoError(t, s.Append(testFragment(6, 100)))
		require.NoError(t, s.Close())
		s, err = OpenSpool(SpoolOptions{Dir: dir})
		require.NoError(t, err)
		require.Equal(t, append(want, 6), waiting(t, s), "cut at %d, reopened", cut)
		require.Zero(t, s.Stats().TruncatedBytes)
		require.NoError(t, s.Close())
	}
}

func TestSpoolCorruptRecord(t *testing.T) {
	tests := []struct {
		name string
		at   func(size int) int // byte to flip in the segment
		want []int
	}{
		{"payload of the last record", func(size int) int { return size - 10 }, seq(1, 2)},
		{"length of the last record", func(size int) int { return 2*(recHeaderLen+8+200) + 5 }, seq(1, 2)},
		{"payload of the second record", func(size int) int { return recHeaderLen + 8 + 200 + 60 }, seq(1, 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenSpool(SpoolOptions{Dir: dir})
			require.NoError(t, err)
			for i := 1; i <= 3; i++ {
				require.NoError(t, s.Append(testFragment(i, 200)))
			}
			require.NoError(t, s.Close())
			name := segFiles(t, dir)[0]
			b, err := os.ReadFile(name)
			require.NoError(t, err)
			b[tc.at(len(b))] ^= 0x40
			require.NoError(t, os.WriteFile(name, b, 0o600))
			s, err = OpenSpool(SpoolOptions{Dir: dir})
			require.NoError(t, err)
			require.Equal(t, tc.want, waiting(t, s))
			require.NoError(t, s.Close())
		})
	}
}

func TestSpoolDoneDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(SpoolOptions{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 64 << 10})
	require.NoError(t, err)
	for i := 1; i <= 40; i++ {
		require.NoError(t, s.Append(testFragment(i, 10_000)))
	}
	require.Greater(t, len(segFiles(t, dir)), 5)
	for i := 1; i <= 40; i++ {
		info, ok := s.Next(0)
		require.True(t, ok)
		require.NoError(t, s.Done(info.Seq))
	}
	require.Len(t, segFiles(t, dir), 1, "only the active segment stays")
	st := s.Stats()
	require.Zero(t, st.Fragments)
	require.EqualValues(t, 40, st.Done)
	require.NoError(t, s.Close())
	s, err = OpenSpool(SpoolOptions{Dir: dir})
	require.NoError(t, err)
	require.Empty(t, waiting(t, s))
	require.Empty(t, segFiles(t, dir), "a finished segment of an earlier run is deleted on open")
	require.NoError(t, s.Append(testFragment(41, 10)))
	info, ok := s.Next(0)
	require.True(t, ok)
	require.EqualValues(t, 41, info.Seq, "sequence numbers are never reused")
	require.NoError(t, s.Close())
}

func TestSpoolBounds(t *testing.T) {
	tests := []struct {
		name     string
		opts     SpoolOptions
		appends  int
		size     int
		now      time.Time
		keepFrom int // first fragment still waiting
	}{
		{"max_bytes: the oldest segments go first", SpoolOptions{MaxBytes: 200_000, SegmentBytes: 25_000}, 60, 10_000, time.Time{}, 0},
		{"max_age: fragments captured too long ago go", SpoolOptions{MaxAge: 30 * time.Second}, 40, 1000, testT0.Add(80 * time.Second), 25},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Dir = t.TempDir()
			if !tc.now.IsZero() {
				tc.opts.Now = func() time.Time { return tc.now }
			}
			s, err := OpenSpool(tc.opts)
			require.NoError(t, err)
			for i := 1; i <= tc.appends; i++ {
				require.NoError(t, s.Append(testFragment(i, tc.size)))
				if tc.opts.MaxBytes > 0 {
					require.LessOrEqual(t, s.Stats().Bytes, tc.opts.MaxBytes, "bounded after every append")
				}
			}
			got := waiting(t, s)
			require.NotEmpty(t, got)
			first := got[0]
			if tc.keepFrom > 0 {
				require.Equal(t, tc.keepFrom, first)
			}
			require.Equal(t, seq(first, tc.appends), got, "a contiguous run of the newest")
			st := s.Stats()
			require.EqualValues(t, first-1, st.DroppedFragments, "every dropped fragment counted")
			require.EqualValues(t, int64((first-1)*tc.size), st.DroppedBytes)
			require.Equal(t, testT0.Add(time.Duration(first)*2*time.Second), st.Oldest.UTC())
			var onDisk int64
			for _, f := range segFiles(t, tc.opts.Dir) {
				fi, err := os.Stat(f)
				require.NoError(t, err)
				onDisk += fi.Size()
			}
			require.Equal(t, st.Bytes, onDisk)
			require.NoError(t, s.Close())
			// What was dropped stays dropped after a restart.
			s, err = OpenSpool(tc.opts)
			require.NoError(t, err)
			require.Equal(t, got, waiting(t, s))
			require.NoError(t, s.Close())
		})
	}
}

func TestSpoolRefusesOversizeFragment(t *testing.T) {
	s, err := OpenSpool(SpoolOptions{Dir: t.TempDir(), MaxBytes: 100_000})
	require.NoError(t, err)
	defer s.Close()
	err = s.Append(testFragment(1, 200_000))
	require.ErrorContains(t, err, "max_bytes")
}
