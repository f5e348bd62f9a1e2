package openh264_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/openh264"
	"github.com/stretchr/testify/require"
)

// loaded skips a test where libopenh264 is not installed.
func loaded(t *testing.T) {
	t.Helper()
	if err := openh264.Load(); err != nil {
		t.Skip(err)
	}
}

// gstLuma decodes a clip with GStreamer's avdec_h264 (FFmpeg) into packed luma planes (the
// Y plane of I420 as decoded: no conversion of range or matrix).
func gstLuma(t *testing.T, path string) [][]byte {
	t.Helper()
	p, err := gst.Parse(fmt.Sprintf("filesrc location=%q ! parsebin ! h264parse ! avdec_h264 ! video/x-raw,format=I420 ! appsink name=out sync=false", path), gst.Options{})
	require.NoError(t, err)
	var mu sync.Mutex
	var out [][]byte
	require.NoError(t, p.OnSample("out", func(s gst.Sample) {
		mu.Lock()
		defer mu.Unlock()
		stride := (s.Width + 3) &^ 3 // GStreamer's I420 luma stride
		packed := make([]byte, 0, s.Width*s.Height)
		for y := range s.Height {
			packed = append(packed, s.Data[y*stride:y*stride+s.Width]...)
		}
		out = append(out, packed)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.ErrorIs(t, p.Run(ctx), gst.ErrEOS)
	return out
}

// TestDecodeMatchesFFmpeg decodes real clips access unit by access unit and compares every
// picture's luma with FFmpeg's (both are conforming H.264 decoders: bit-exact), which also
// checks the structures this package mirrors from libopenh264's headers.
func TestDecodeMatchesFFmpeg(t *testing.T) {
	loaded(t)
	for _, name := range []string{testclip.Ball, testclip.Live720} {
		t.Run(name, func(t *testing.T) {
			path, _ := testclip.Path(t, name)
			aus, err := rtsptest.ReadClip(path)
			require.NoError(t, err)
			want := gstLuma(t, path)
			require.Len(t, want, len(aus))

			d, err := openh264.New()
			require.NoError(t, err)
			defer d.Close()
			got := 0
			check := func(pic openh264.Picture) {
				i := got
				require.Less(t, i, len(want), "more pictures than units")
				require.Equal(t, aus[i].PTS, pic.PTS, "picture %d's timestamp", i)
				packed := make([]byte, 0, pic.Width*pic.Height)
				for y := range pic.Height {
					packed = append(packed, pic.Y[y*pic.Stride:y*pic.Stride+pic.Width]...)
				}
				require.Equal(t, len(want[i]), len(packed), "picture %d's size", i)
				if !bytes.Equal(want[i], packed) {
					n, maxd := 0, 0
					for k := range packed {
						if packed[k] != want[i][k] {
							n++
							maxd = max(maxd, int(packed[k])-int(want[i][k]), int(want[i][k])-int(packed[k]))
						}
					}
					t.Fatalf("picture %d differs from FFmpeg's: %d of %d pixels, by up to %d", i, n, len(packed), maxd)
				}
				got++
			}
			for i, au := range aus {
				pic, ok, err := d.Decode(bytes.Join(append([][]byte{nil}, au.NALUs...), []byte{0, 0, 0, 1}), au.PTS)
				require.NoError(t, err, "unit %d", i)
				if ok {
					check(pic)
				}
				require.GreaterOrEqual(t, got, i, "a picture is at most one unit late")
			}
			for {
				pic, ok, err := d.Flush()
				require.NoError(t, err)
				if !ok {
					break
				}
				check(pic)
			}
			require.Equal(t, len(aus), got)
		})
	}
}

// TestDecodeErrors: garbage and a P-frame without its references are errors the decoder
// survives; the next keyframe decodes.
func TestDecodeErrors(t *testing.T) {
	loaded(t)
	path, _ := testclip.Path(t, testclip.Ball)
	aus, err := rtsptest.ReadClip(path)
	require.NoError(t, err)
	annexB := func(i int) []byte { return bytes.Join(append([][]byte{nil}, aus[i].NALUs...), []byte{0, 0, 0, 1}) }

	d, err := openh264.New()
	require.NoError(t, err)
	defer d.Close()
	_, ok, err := d.Decode(annexB(5), 0) // a P-frame first: no SPS, PPS or reference
	require.False(t, ok)
	require.ErrorIs(t, err, openh264.ErrBitstream)
	_, ok, err = d.Decode(nil, 0)
	require.NoError(t, err)
	require.False(t, ok)
	_, _, err = d.Decode(annexB(0), 0)
	require.NoError(t, err)
	pic, ok, err := d.Decode(annexB(1), time.Second/15)
	require.NoError(t, err)
	require.True(t, ok, "the keyframe decodes (returned one unit late: the clip is High profile)")
	require.Zero(t, pic.PTS, "the keyframe's picture")
	require.Equal(t, 640, pic.Width)
	require.Equal(t, 360, pic.Height)
	d.Close()
	_, _, err = d.Decode(annexB(2), 0)
	require.ErrorContains(t, err, "closed")
}

// BenchmarkDecode decodes the 640x360 clip unit by unit (ns/op is per picture);
// OPENH264_BENCH_CLIP=file decodes another.
func BenchmarkDecode(b *testing.B) {
	if err := openh264.Load(); err != nil {
		b.Skip(err)
	}
	path, _ := testclip.Path(b, testclip.Ball)
	if p := os.Getenv("OPENH264_BENCH_CLIP"); p != "" {
		path = p // another clip
	}
	clip, err := rtsptest.ReadClip(path)
	require.NoError(b, err)
	units := make([][]byte, len(clip))
	for i, au := range clip {
		units[i] = bytes.Join(append([][]byte{nil}, au.NALUs...), []byte{0, 0, 0, 1})
	}
	d, err := openh264.New()
	require.NoError(b, err)
	defer d.Close()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, err := d.Decode(units[i%len(units)], 0); err != nil {
			b.Fatal(err)
		}
	}
}
