package mkv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var h264Track = Track{Number: 1, UID: 1, Type: 1, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x42, 0xC0, 0x1E, 0xFF, 0xE0}, PixelWidth: 640, PixelHeight: 360}

// producerStream is what kvssink sends: header, then clusters of n frames at 1 s steps.
func producerStream(clusters, frames int) []byte {
	out := StreamStart(1000000, "test", h264Track)
	for c := 0; c < clusters; c++ {
		out = append(out, ClusterStart(uint64(1_700_000_000_000+c*2000))...)
		for f := 0; f < frames; f++ {
			out = append(out, SimpleBlockElement(1, int16(f*66), f == 0, bytes.Repeat([]byte{byte(f)}, 100+f))...)
		}
	}
	return out
}

func events(t *testing.T, data []byte) ([]Event, error) {
	t.Helper()
	d := NewDemuxer(bytes.NewReader(data), Limits{})
	var out []Event
	for {
		ev, err := d.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func kinds(evs []Event) []EventKind {
	var k []EventKind
	for _, e := range evs {
		k = append(k, e.Kind)
	}
	return k
}

func TestDemuxerProducerStream(t *testing.T) {
	evs, err := events(t, append(producerStream(2, 3), TagsElement([]SimpleTag{{"AWS_KINESISVIDEO_END_OF_FRAGMENT", ""}})...))
	require.NoError(t, err)
	require.Equal(t, []EventKind{EventEBMLHeader, EventSegment, EventInfo, EventTracks,
		EventClusterStart, EventBlock, EventBlock, EventBlock, EventClusterEnd,
		EventClusterStart, EventBlock, EventBlock, EventBlock, EventClusterEnd, EventTags}, kinds(evs))
	require.Equal(t, uint64(1000000), evs[2].TimecodeScale)
	require.Equal(t, []Track{h264Track}, evs[3].Tracks)
	require.Equal(t, int64(1_700_000_002_000), evs[9].Timecode)
	require.True(t, evs[5].Block.Keyframe)
	require.False(t, evs[6].Block.Keyframe)
	require.Equal(t, int16(66), evs[6].Block.Timecode)
	require.Len(t, evs[6].Block.Payload, 101)
	require.Equal(t, "AWS_KINESISVIDEO_END_OF_FRAGMENT", evs[14].Tags[0].Name)
}

func TestDemuxerTwoSegmentsAndKnownSizes(t *testing.T) {
	cluster := Element(IDCluster, Concat(UintElement(IDTimecode, 5), SimpleBlockElement(1, 0, true, []byte{1, 2, 3})))
	one := Concat(EBMLHeader(), Element(IDSegment, Concat(InfoElement(1000000, "x"), TracksElement(h264Track), cluster)))
	evs, err := events(t, Concat(one, producerStream(1, 1)))
	require.NoError(t, err)
	require.Equal(t, []EventKind{EventEBMLHeader, EventSegment, EventInfo, EventTracks, EventClusterStart, EventBlock, EventClusterEnd,
		EventEBMLHeader, EventSegment, EventInfo, EventTracks, EventClusterStart, EventBlock, EventClusterEnd}, kinds(evs))
}

func TestDemuxerBadInput(t *testing.T) {
	good := producerStream(1, 2)
	tests := []struct {
		name string
		data []byte
		cut  bool // io.ErrUnexpectedEOF rather than a FormatError
	}{
		{"garbage", []byte("this is not a matroska stream at all"), false},
		{"zero byte", []byte{0, 0, 0, 0}, false},
		{"segment first", Concat(AppendHeader(nil, IDSegment, UnknownSize), InfoElement(1, "x")), false},
		{"cluster before tracks", Concat(EBMLHeader(), AppendHeader(nil, IDSegment, UnknownSize), ClusterStart(1)), false},
		{"block before timecode", Concat(StreamStart(1000000, "x", h264Track), AppendHeader(nil, IDCluster, UnknownSize), SimpleBlockElement(1, 0, true, []byte{1})), false},
		{"two timecodes", Concat(StreamStart(1000000, "x", h264Track), ClusterStart(1), UintElement(IDTimecode, 2)), false},
		{"webm doc type is fine but pdf is not", Concat(Element(IDEBML, StringElement(IDDocType, "pdf"))), false},
		{"huge tracks", Concat(EBMLHeader(), AppendHeader(nil, IDSegment, UnknownSize), AppendHeader(nil, IDTracks, 1<<40)), false},
		{"truncated block", good[:len(good)-10], true},
		{"truncated header", good[:20], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events(t, tt.data)
			require.Error(t, err)
			require.True(t, IsFormatError(err), "%v", err)
			require.Equal(t, tt.cut, errors.Is(err, io.ErrUnexpectedEOF), "%v", err)
		})
	}
}

func TestAppendHeaderSizes(t *testing.T) {
	for _, size := range []int64{0, 1, 126, 127, 128, 16382, 16383, 1 << 20, 1<<35 + 3} {
		h := AppendHeader(nil, IDCluster, size)
		er := newElementReader(bytes.NewReader(h))
		got, err := er.readHeader()
		require.NoError(t, err)
		require.Equal(t, size, got.Size, "size %d encoded %x", size, h)
		require.Equal(t, IDCluster, got.ID)
	}
}

// TestDemuxerGStreamerMatroska reads what GStreamer's matroskamux writes when streaming.
func TestDemuxerGStreamerMatroska(t *testing.T) {
	if _, err := exec.LookPath("gst-launch-1.0"); err != nil {
		t.Fatal("gst-launch-1.0 is not installed: run scripts/install-deps.sh")
	}
	out := filepath.Join(t.TempDir(), "s.mkv")
	cmd := exec.Command("gst-launch-1.0", "-q", "videotestsrc", "num-buffers=45", "!", "video/x-raw,width=320,height=180,framerate=15/1",
		"!", "x264enc", "key-int-max=15", "bframes=0", "tune=zerolatency", "!", "h264parse", "!", "video/x-h264,stream-format=avc",
		"!", "matroskamux", "streamable=true", "!", "filesink", "location="+out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	evs, err := events(t, data)
	require.NoError(t, err)
	blocks, keys := 0, 0
	for _, e := range evs {
		if e.Kind == EventBlock {
			blocks++
			if e.Block.Keyframe {
				keys++
			}
		}
		if e.Kind == EventTracks {
			require.Equal(t, "V_MPEG4/ISO/AVC", e.Tracks[0].CodecID)
			require.Equal(t, uint64(320), e.Tracks[0].PixelWidth)
		}
	}
	require.Equal(t, 45, blocks)
	require.Equal(t, 3, keys)
}

// FuzzDemuxer: no input makes the demuxer panic, loop or hold more than its limits.
func FuzzDemuxer(f *testing.F) {
	f.Add(producerStream(2, 3))
	f.Add(producerStream(1, 1)[:40])
	f.Add(Concat(EBMLHeader(), Element(IDSegment, Concat(InfoElement(1000000, "x"), TracksElement(h264Track), Element(IDCluster, Concat(UintElement(IDTimecode, 5), Element(IDBlockGroup, Element(IDBlock, []byte{0x81, 0, 0, 0, 1}))))))))
	f.Add(Concat(producerStream(1, 1), TagsElement([]SimpleTag{{"AWS_KINESISVIDEO_END_OF_FRAGMENT", ""}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDemuxer(bytes.NewReader(data), Limits{MaxMetaElement: 1 << 16, MaxBlock: 1 << 16})
		if len(data) > 0 && data[0]&1 == 1 {
			d.Resume() // a continued stream, half of the time
		}
		for i := 0; ; i++ {
			ev, err := d.Next()
			if err != nil {
				if err != io.EOF && !IsFormatError(err) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if int64(len(ev.Raw)) > 1<<16+16 {
				t.Fatalf("event of %d bytes over the limits", len(ev.Raw))
			}
			if i > len(data)+2 {
				t.Fatalf("%d events from %d bytes", i, len(data))
			}
		}
	})
}

// BenchmarkDemuxer reads a producer stream of 2 s clusters of 60 frames of 8 KB.
func BenchmarkDemuxer(b *testing.B) {
	stream := StreamStart(1000000, "bench", h264Track)
	frame := bytes.Repeat([]byte{7}, 8000)
	for c := 0; c < 50; c++ {
		stream = append(stream, ClusterStart(uint64(c*2000))...)
		for f := 0; f < 60; f++ {
			stream = append(stream, SimpleBlockElement(1, int16(f*33), f == 0, frame)...)
		}
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		d := NewDemuxer(bytes.NewReader(stream), Limits{})
		for {
			if _, err := d.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

func TestDemuxerResume(t *testing.T) {
	tail := Concat(SimpleBlockElement(1, 66, false, []byte{1}), SimpleBlockElement(1, 133, false, []byte{2}),
		TagsElement([]SimpleTag{{"AWS_KINESISVIDEO_END_OF_FRAGMENT", ""}}), ClusterStart(2000), SimpleBlockElement(1, 0, true, []byte{3}))
	d := NewDemuxer(bytes.NewReader(Concat(tail, producerStream(1, 1))), Limits{})
	d.Resume()
	var got []EventKind
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		got = append(got, ev.Kind)
	}
	require.Equal(t, []EventKind{EventOrphanBlock, EventOrphanBlock, EventTags, EventClusterStart, EventBlock, EventClusterEnd,
		EventEBMLHeader, EventSegment, EventInfo, EventTracks, EventClusterStart, EventBlock, EventClusterEnd}, got)
	require.Equal(t, 2, d.Orphans())

	// Only what a producer sends is skipped.
	d = NewDemuxer(bytes.NewReader(Concat(Element(IDChapters, []byte{1, 2}), tail)), Limits{})
	d.Resume()
	_, err := d.Next()
	require.True(t, IsFormatError(err), "%v", err)
}
