package gst

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecam/edgecam/media/h264"
	"github.com/stretchr/testify/require"
)

const encode = "videotestsrc pattern=ball num-buffers=%d ! video/x-raw,width=320,height=180,framerate=30/1 ! " +
	"x264enc tune=zerolatency bframes=0 key-int-max=%d speed-preset=ultrafast name=enc ! h264parse config-interval=-1 ! " +
	"video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=video sync=false"

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestVersion(t *testing.T) {
	require.True(t, strings.HasPrefix(Version(), "GStreamer 1."), Version())
}

func TestMissingElements(t *testing.T) {
	require.NoError(t, MissingElements("videotestsrc", "appsink"))
	err := MissingElements("videotestsrc", "nosuchelement", "kvssink")
	if HasElement("kvssink") {
		require.ErrorContains(t, err, "nosuchelement")
		return
	}
	require.ErrorContains(t, err, "kvssink (the KVS producer SDK (see README)), nosuchelement")
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, desc, want string }{
		{"unknown element", "videotestsrc ! nosuchelement ! fakesink", "nosuchelement"},
		{"bad syntax", "videotestsrc ! ! fakesink", "pipeline bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.desc, Options{Name: "bad"})
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestAppSinkDeliversAccessUnits(t *testing.T) {
	p, err := Parse(sprintf(encode, 45, 15), Options{Name: "enc"})
	require.NoError(t, err)
	var (
		mu      sync.Mutex
		samples []Sample
	)
	require.NoError(t, p.OnSample("video", func(s Sample) {
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	}))
	err = p.Run(ctxT(t, 30*time.Second))
	require.ErrorIs(t, err, ErrEOS)

	require.Len(t, samples, 45)
	keys := 0
	for i, s := range samples {
		require.NotEmpty(t, s.Data)
		// x264enc offsets timestamps (by 1000 h) so that DTS never goes negative: compare steps.
		require.Equal(t, time.Duration(i)*time.Second/30, s.PTS-samples[0].PTS, "PTS of frame %d", i)
		isKey := h264.IsKeyframe(s.Data)
		require.Equal(t, !s.Delta, isKey, "frame %d: DELTA_UNIT flag and IDR disagree", i)
		if isKey {
			keys++
			require.True(t, h264.HasParamSets(s.Data), "IDR %d without in-band SPS/PPS", i)
		}
	}
	require.Equal(t, 3, keys, "key-int-max=15 over 45 frames")
	sps, _ := h264.ParamSets(samples[0].Data)
	info, err := h264.ParseSPS(sps)
	require.NoError(t, err)
	require.Equal(t, 320, info.Width)
	require.Equal(t, 180, info.Height)
}

func TestRawSamplesCarryFrameSize(t *testing.T) {
	p, err := Parse("videotestsrc num-buffers=3 ! video/x-raw,format=GRAY8,width=64,height=36 ! appsink name=gray sync=false", Options{})
	require.NoError(t, err)
	var got []Sample
	require.NoError(t, p.OnSample("gray", func(s Sample) { got = append(got, s) }))
	require.ErrorIs(t, p.Run(ctxT(t, 10*time.Second)), ErrEOS)
	require.Len(t, got, 3)
	require.Equal(t, 64, got[0].Width)
	require.Equal(t, 36, got[0].Height)
	require.Len(t, got[0].Data, 64*36)
}

func TestRunReportsBusErrors(t *testing.T) {
	p, err := Parse("filesrc location=/nonexistent/clip.mp4 name=reader ! fakesink", Options{Name: "file"})
	require.NoError(t, err)
	err = p.Run(ctxT(t, 10*time.Second))
	var gerr *Error
	require.ErrorAs(t, err, &gerr)
	require.Equal(t, "reader", gerr.Element)
	require.Contains(t, gerr.Error(), "pipeline file: reader:")
}

func TestRunStopsOnContext(t *testing.T) {
	p, err := Parse("videotestsrc is-live=true ! fakesink", Options{Name: "live"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	require.NoError(t, p.Run(ctx))
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestAppSrcToAppSink(t *testing.T) {
	// Encode a few frames, then push them through an appsrc → h264parse → appsink pipeline
	// and check that every access unit and timestamp arrives intact.
	enc, err := Parse(sprintf(encode, 30, 10), Options{})
	require.NoError(t, err)
	var units []Sample
	require.NoError(t, enc.OnSample("video", func(s Sample) { units = append(units, s) }))
	require.ErrorIs(t, enc.Run(ctxT(t, 30*time.Second)), ErrEOS)

	p, err := Parse("appsrc name=src format=time is-live=false caps=video/x-h264,stream-format=byte-stream,alignment=au ! "+
		"h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=out sync=false", Options{Name: "relay", Drain: 5 * time.Second})
	require.NoError(t, err)
	src, err := p.AppSrc("src")
	require.NoError(t, err)
	var got atomic.Int32
	require.NoError(t, p.OnSample("out", func(Sample) { got.Add(1) }))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for _, u := range units {
		require.NoError(t, src.Push(Buffer{Data: u.Data, PTS: u.PTS, DTS: u.DTS, Duration: u.Duration, Delta: u.Delta}))
	}
	require.NoError(t, src.EndOfStream())
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrEOS)
	case <-time.After(20 * time.Second):
		t.Fatal("EOS did not arrive")
	}
	cancel()
	require.Equal(t, int32(len(units)), got.Load())
}

func TestDrainFinalisesOnCancel(t *testing.T) {
	dir := t.TempDir()
	p, err := Parse("videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=90,framerate=30/1 ! "+
		"x264enc tune=zerolatency key-int-max=15 ! h264parse ! mp4mux ! filesink location="+dir+"/out.mp4",
		Options{Name: "mp4", Drain: 5 * time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(700*time.Millisecond, cancel)
	require.NoError(t, p.Run(ctx), "drain must end in EOS")

	// A finalised MP4 has its moov box; an unfinalised one does not.
	check, err := Parse("filesrc location="+dir+"/out.mp4 ! qtdemux ! h264parse ! fakesink", Options{Name: "check"})
	require.NoError(t, err)
	require.ErrorIs(t, check.Run(ctxT(t, 10*time.Second)), ErrEOS)
}

func TestSetPropertyAndForceKeyUnit(t *testing.T) {
	p, err := Parse("videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=180,framerate=30/1 ! "+
		"x264enc name=enc tune=zerolatency bframes=0 key-int-max=100000 speed-preset=ultrafast ! h264parse config-interval=-1 ! "+
		"video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=video", Options{Name: "ctl"})
	require.NoError(t, err)

	require.NoError(t, p.SetProperty("enc", "bitrate", 300))
	v, err := p.Property("enc", "bitrate")
	require.NoError(t, err)
	require.EqualValues(t, 300, v)
	require.ErrorContains(t, p.SetProperty("enc", "no-such-property", 1), `no property "no-such-property"`)
	require.ErrorContains(t, p.SetProperty("nope", "bitrate", 1), `no element named "nope"`)

	var keys, frames atomic.Int32
	require.NoError(t, p.OnSample("video", func(s Sample) {
		frames.Add(1)
		if h264.IsKeyframe(s.Data) {
			keys.Add(1)
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, func() bool { return frames.Load() >= 10 })
	require.Equal(t, int32(1), keys.Load(), "only the first frame is a keyframe")
	require.NoError(t, p.ForceKeyUnit("video"))
	waitFor(t, func() bool { return keys.Load() >= 2 })
	cancel()
	require.NoError(t, <-done)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAppSinkAndAppSrcNameChecks(t *testing.T) {
	p, err := Parse("videotestsrc name=v ! fakesink name=f", Options{})
	require.NoError(t, err)
	require.ErrorContains(t, p.OnSample("f", func(Sample) {}), "not an appsink")
	_, err = p.AppSrc("v")
	require.ErrorContains(t, err, "not an appsrc")
	require.True(t, p.HasElementNamed("v"))
	require.False(t, errors.Is(err, ErrEOS))
}

func TestNameSegments(t *testing.T) {
	dir := t.TempDir()
	p, err := Parse("videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=160,height=90,framerate=30/1 ! "+
		"x264enc key-int-max=15 ! h264parse ! splitmuxsink name=mux max-size-time=1000000000 muxer-factory=matroskamux location="+dir+"/x%d.mkv",
		Options{Name: "split"})
	require.NoError(t, err)
	var asked []uint
	var firsts []time.Duration
	require.NoError(t, p.NameSegments("mux", func(i uint, first time.Duration) string {
		asked = append(asked, i)
		firsts = append(firsts, first)
		return sprintf("%s/custom-%02d.mkv", dir, i)
	}))
	require.ErrorIs(t, p.Run(ctxT(t, 20*time.Second)), ErrEOS)
	require.Equal(t, []uint{0, 1, 2}, asked)
	// Each file starts on a keyframe at whole seconds (key-int-max=15 at 30 fps, 1 s files).
	for i, first := range firsts {
		require.Equal(t, time.Duration(i)*time.Second, first-firsts[0], "first PTS of file %d", i)
	}
	for _, i := range asked {
		require.FileExists(t, sprintf("%s/custom-%02d.mkv", dir, i))
	}
}
