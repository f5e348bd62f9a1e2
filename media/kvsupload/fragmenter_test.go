package kvsupload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/stretchr/testify/require"
)

// encode makes a real H.264 stream with x264 (through ffmpeg): Annex-B, an AUD before every
// access unit, SPS/PPS on every IDR, no B-frames; it returns the access units.
func encode(t testing.TB, size string, fps, seconds, gop int) []media.AccessUnit {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg is not installed (apt-get install ffmpeg)")
	}
	out := filepath.Join(t.TempDir(), "in.h264")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", fmt.Sprintf("testsrc2=size=%s:rate=%d", size, fps), "-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-g", strconv.Itoa(gop), "-bf", "0", "-x264-params", "repeat-headers=1:aud=1:scenecut=0",
		"-pix_fmt", "yuv420p", "-f", "h264", "-y", out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	stream, err := os.ReadFile(out)
	require.NoError(t, err)
	return splitAUs(stream, fps)
}

// splitAUs cuts an Annex-B stream at its AUDs and stamps the units at fps from a fixed wall time.
func splitAUs(stream []byte, fps int) []media.AccessUnit {
	var starts []int
	for i := 0; i+4 < len(stream); i++ {
		if stream[i] == 0 && stream[i+1] == 0 && stream[i+2] == 1 && stream[i+3]&0x1f == byte(h264.NALAUD) {
			s := i
			if s > 0 && stream[s-1] == 0 {
				s--
			}
			starts = append(starts, s)
		}
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	frame := time.Second / time.Duration(fps)
	var aus []media.AccessUnit
	for i, s := range starts {
		e := len(stream)
		if i+1 < len(starts) {
			e = starts[i+1]
		}
		data := stream[s:e]
		pts := time.Duration(i) * frame
		aus = append(aus, media.AccessUnit{Data: data, PTS: pts, DTS: pts, Duration: frame, Keyframe: h264.IsKeyframe(data),
			Wall: base.Add(pts), Seq: uint64(i + 1)})
	}
	return aus
}

func fragmentAll(f *Fragmenter, aus []media.AccessUnit) []Fragment {
	var frags []Fragment
	for _, au := range aus {
		if fr, ok := f.Push(au); ok {
			frags = append(frags, fr)
		}
	}
	if fr, ok := f.Flush(); ok {
		frags = append(frags, fr)
	}
	return frags
}

// writeMKV writes fragments the way PutMedia sends them: header once, then the clusters.
func writeMKV(t testing.TB, frags []Fragment) string {
	t.Helper()
	var b bytes.Buffer
	b.Write(frags[0].Header)
	for _, f := range frags {
		require.Equal(t, frags[0].Header, f.Header, "one track per file")
		b.Write(f.Cluster)
	}
	b.Write(EndOfStream())
	path := filepath.Join(t.TempDir(), "out.mkv")
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
	return path
}

type probe struct {
	Streams []struct {
		CodecName  string `json:"codec_name"`
		Width      int    `json:"width"`
		Height     int    `json:"height"`
		ReadFrames string `json:"nb_read_frames"`
	} `json:"streams"`
}

func ffprobe(t testing.TB, path string) probe {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", path).Output()
	require.NoError(t, err)
	var p probe
	require.NoError(t, json.Unmarshal(out, &p))
	return p
}

// mkvDoc is what ebml-go reads back of a fragment stream.
type mkvDoc struct {
	Header struct {
		DocType string `ebml:"EBMLDocType"`
	} `ebml:"EBML"`
	Segment struct {
		Info struct {
			TimecodeScale uint64 `ebml:"TimecodeScale"`
		} `ebml:"Info"`
		Tracks struct {
			TrackEntry []struct {
				TrackNumber  uint64 `ebml:"TrackNumber"`
				CodecID      string `ebml:"CodecID"`
				CodecPrivate []byte `ebml:"CodecPrivate"`
				Video        struct {
					PixelWidth  uint64 `ebml:"PixelWidth"`
					PixelHeight uint64 `ebml:"PixelHeight"`
				} `ebml:"Video"`
			} `ebml:"TrackEntry"`
		} `ebml:"Tracks"`
		Cluster []struct {
			Timecode    uint64       `ebml:"Timecode"`
			SimpleBlock []ebml.Block `ebml:"SimpleBlock"`
		} `ebml:"Cluster"`
	} `ebml:"Segment"`
}

func TestFragmenterRealStream(t *testing.T) {
	tests := []struct {
		name          string
		size          string
		fps, sec, gop int
	}{
		{"320x240 15fps 1s GOP", "320x240", 15, 6, 15},
		{"640x360 30fps 2s GOP", "640x360", 30, 5, 60},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			aus := encode(t, tc.size, tc.fps, tc.sec, tc.gop)
			require.Len(t, aus, tc.fps*tc.sec)
			f := NewFragmenter(FragmenterOptions{})
			frags := fragmentAll(f, aus)
			require.Len(t, frags, (len(aus)+tc.gop-1)/tc.gop, "one fragment per GOP")

			path := writeMKV(t, frags)
			p := ffprobe(t, path)
			require.Len(t, p.Streams, 1)
			require.Equal(t, "h264", p.Streams[0].CodecName)
			require.Equal(t, tc.size, fmt.Sprintf("%dx%d", p.Streams[0].Width, p.Streams[0].Height))
			require.Equal(t, strconv.Itoa(len(aus)), p.Streams[0].ReadFrames, "every access unit decodes")

			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			var doc mkvDoc
			require.NoError(t, ebml.Unmarshal(bytes.NewReader(raw), &doc))
			require.Equal(t, "matroska", doc.Header.DocType)
			require.EqualValues(t, 1_000_000, doc.Segment.Info.TimecodeScale)
			require.Len(t, doc.Segment.Tracks.TrackEntry, 1)
			te := doc.Segment.Tracks.TrackEntry[0]
			require.EqualValues(t, 1, te.TrackNumber)
			require.Equal(t, CodecID, te.CodecID)
			require.Equal(t, f.Track().AVCC(), te.CodecPrivate)
			require.Len(t, doc.Segment.Cluster, len(frags))
			base := aus[0].Wall.UnixMilli()
			frames := 0
			for i, c := range doc.Segment.Cluster {
				require.EqualValues(t, frags[i].Timecode, c.Timecode)
				require.EqualValues(t, base+int64(math.Round(float64(i*tc.gop*1000)/float64(tc.fps))), c.Timecode, "absolute epoch ms of the GOP's keyframe")
				require.Len(t, c.SimpleBlock, frags[i].Frames)
				for j, blk := range c.SimpleBlock {
					require.EqualValues(t, 1, blk.TrackNumber)
					require.Equal(t, j == 0, blk.Keyframe, "cluster %d block %d", i, j)
					require.EqualValues(t, int64(math.Round(float64(j*1000)/float64(tc.fps))), blk.Timecode)
					require.Len(t, blk.Data, 1)
					nals, err := splitAVCC(blk.Data[0])
					require.NoError(t, err)
					if j == 0 {
						require.Equal(t, []h264.NALType{h264.NALSPS, h264.NALPPS}, []h264.NALType{h264.TypeOf(nals[0]), h264.TypeOf(nals[1])})
					}
					for _, n := range nals {
						require.NotEqual(t, h264.NALAUD, h264.TypeOf(n), "AUDs are left out")
					}
				}
				frames += len(c.SimpleBlock)
			}
			require.Equal(t, len(aus), frames)
		})
	}
}

func splitAVCC(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("truncated length")
		}
		n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if n > len(b)-4 {
			return nil, fmt.Errorf("length %d past the end", n)
		}
		out = append(out, b[4:4+n])
		b = b[4+n:]
	}
	return out, nil
}

func TestFragmenterTrackChange(t *testing.T) {
	a := encode(t, "320x240", 15, 2, 15)
	b := encode(t, "640x360", 15, 2, 15)
	// The second stream continues the first one's timeline, as after a pipeline restart.
	for i := range b {
		b[i].PTS += a[len(a)-1].PTS + a[len(a)-1].Duration
		b[i].Wall = a[0].Wall.Add(b[i].PTS)
	}
	f := NewFragmenter(FragmenterOptions{})
	frags := fragmentAll(f, append(append([]media.AccessUnit(nil), a...), b...))
	require.Len(t, frags, 4)
	require.Equal(t, frags[0].Header, frags[1].Header)
	require.NotEqual(t, frags[1].Header, frags[2].Header, "a new SPS brings a new track header")
	require.EqualValues(t, 1, f.Stats().TrackChanges)
	for i, want := range []string{"320x240", "640x360"} {
		p := ffprobe(t, writeMKV(t, frags[2*i:2*i+2]))
		require.Equal(t, want, fmt.Sprintf("%dx%d", p.Streams[0].Width, p.Streams[0].Height))
		require.Equal(t, "30", p.Streams[0].ReadFrames)
	}
	for i := 1; i < len(frags); i++ {
		require.Greater(t, frags[i].Timecode, frags[i-1].Timecode)
	}
}

func TestFragmenterEdges(t *testing.T) {
	aus := encode(t, "320x240", 15, 3, 15)
	t.Run("starts at the first keyframe with SPS/PPS", func(t *testing.T) {
		f := NewFragmenter(FragmenterOptions{})
		frags := fragmentAll(f, aus[5:])
		require.Len(t, frags, 2)
		require.EqualValues(t, 10, f.Stats().Dropped)
	})
	t.Run("a GOP longer than MaxDuration is cut", func(t *testing.T) {
		f := NewFragmenter(FragmenterOptions{MaxDuration: 500 * time.Millisecond})
		frags := fragmentAll(f, aus)
		require.Len(t, frags, 3)
		for _, fr := range frags {
			require.Equal(t, 8, fr.Frames) // 0..466 ms at 15 fps
			require.Less(t, fr.Duration, 600*time.Millisecond)
		}
		require.EqualValues(t, 3*7, f.Stats().Dropped)
	})
	t.Run("timecodes never go back after a clock jump", func(t *testing.T) {
		f := NewFragmenter(FragmenterOptions{})
		in := append([]media.AccessUnit(nil), aus...)
		for i := 15; i < len(in); i++ {
			in[i].Wall = in[i].Wall.Add(-time.Hour) // wall clock set back an hour
		}
		frags := fragmentAll(f, in)
		require.Len(t, frags, 3)
		require.Greater(t, frags[1].Timecode, frags[0].Timecode)
		require.Greater(t, frags[2].Timecode, frags[1].Timecode)
	})
}
