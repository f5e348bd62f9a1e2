package kvsupload

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// live720 is 4 s of 1280x720 at 30 fps, 2 s GOP, about 2 Mbit/s (x264 on a moving pattern).
func live720(b *testing.B) []media.AccessUnit {
	b.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Skip("ffmpeg is not installed")
	}
	out := filepath.Join(b.TempDir(), "in.h264")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-t", "4", "-c:v", "libx264", "-b:v", "2M", "-maxrate", "2M", "-bufsize", "2M", "-g", "60", "-bf", "0",
		"-x264-params", "repeat-headers=1:aud=1:scenecut=0", "-pix_fmt", "yuv420p", "-f", "h264", "-y", out)
	o, err := cmd.CombinedOutput()
	require.NoError(b, err, "%s", o)
	stream, err := os.ReadFile(out)
	require.NoError(b, err)
	return splitAUs(stream, 30)
}

// BenchmarkFragmenter720p: one op is one 2 s GOP (60 access units) turned into a fragment.
func BenchmarkFragmenter720p(b *testing.B) {
	aus := live720(b)
	gop := aus[:60]
	f := NewFragmenter(FragmenterOptions{})
	var size int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		base := time.Duration(i) * 2 * time.Second
		for _, au := range gop {
			au.PTS += base
			au.Wall = au.Wall.Add(base)
			if fr, ok := f.Push(au); ok {
				size = len(fr.Cluster)
			}
		}
	}
	b.ReportMetric(float64(size), "bytes/fragment")
}

// BenchmarkSpoolAppend720p: one op is one 2 s fragment appended (one write, one fsync) and
// removed on PERSISTED (the pointer replaced atomically). It reports what reaches the flash
// per hour at this bitrate: record bytes plus the pointer file's writes.
func BenchmarkSpoolAppend720p(b *testing.B) {
	aus := live720(b)
	frags := fragmentAll(NewFragmenter(FragmenterOptions{}), aus)
	fr := frags[0]
	sp, err := OpenSpool(SpoolOptions{Dir: b.TempDir(), Log: zap.NewNop()})
	require.NoError(b, err)
	defer sp.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := fr
		f.Timecode += int64(i) * 2000
		if err := sp.Append(&f); err != nil {
			b.Fatal(err)
		}
		if err := sp.Done(f.Seq); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := sp.Stats()
	perFrag := float64(st.WrittenBytes) / float64(b.N)
	pointer := float64(len(fmt.Sprint(st.Appended)) + 1) // the pointer file's content per Done
	b.ReportMetric(perFrag, "spool-bytes/fragment")
	b.ReportMetric(float64(st.Syncs)/float64(b.N), "fsyncs/fragment")
	b.ReportMetric((perFrag+pointer)*1800/1e6, "MB-written/hour")
	b.ReportMetric(float64(len(fr.Cluster))*8/2/1000, "stream-kbit/s")
}

// BenchmarkUpload720p: one op is one fragment through the whole native path after the
// fragmenter: spool append, PutMedia over a local connection to the test server (which
// parses it and acknowledges), PERSISTED, removal from the spool.
func BenchmarkUpload720p(b *testing.B) {
	aus := live720(b)
	// Distinct fragments (each cluster carries its own timecode): the first GOP, again and again.
	fr := NewFragmenter(FragmenterOptions{})
	var frags []Fragment
	for i := 0; len(frags) < b.N; i++ {
		for _, au := range aus[:60] {
			au.PTS += time.Duration(i) * 2 * time.Second
			au.Wall = au.Wall.Add(time.Duration(i) * 2 * time.Second)
			if f, ok := fr.Push(au); ok {
				frags = append(frags, f)
			}
		}
	}
	fake := newFakeKVS(b, "bench", true)
	sp, err := OpenSpool(SpoolOptions{Dir: b.TempDir(), Log: zap.NewNop()})
	require.NoError(b, err)
	defer sp.Close()
	up, err := NewUploader(UploaderOptions{Spool: sp, StreamName: "bench", Region: "us-east-1", Credentials: staticCreds(time.Time{}),
		ControlPlaneURL: fake.URL(), MaxInFlight: 4, Log: zap.NewNop()})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- up.Run(ctx) }()
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := sp.Append(&frags[i]); err != nil {
			b.Fatal(err)
		}
		for sp.Stats().Fragments > 1 { // the newest is closed by the next one
			select {
			case <-fake.changed:
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/fragment(incl.server)")
	cancel()
	<-done
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
