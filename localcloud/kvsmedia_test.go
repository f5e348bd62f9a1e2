package localcloud

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/edgecam/edgecam/localcloud/mkv"
	"github.com/stretchr/testify/require"
)

// expectError reads acks up to an ERROR and checks its ErrorId; the connection then ends.
func (p *putMediaConn) expectError(t *testing.T, errorID int) ack {
	t.Helper()
	for {
		a, ok := p.next(t)
		require.True(t, ok, "connection ended without an ERROR %d", errorID)
		if a.EventType == "ERROR" {
			require.Equal(t, errorID, a.ErrorID, "%+v", a)
			_, ok := p.next(t)
			require.False(t, ok, "the connection ends after an ERROR")
			return a
		}
	}
}

func TestPutMediaBadInput(t *testing.T) {
	c := start(t, Options{})
	frames, track := testFrames(t)
	header, clusters := producerMKV(frames, track, time.Now().UnixMilli())
	big := bytes.Repeat([]byte{0x55}, 1<<20)
	oversized := mkv.ClusterStart(uint64(time.Now().UnixMilli()))
	for i := 0; i < 51; i++ {
		oversized = append(oversized, mkv.SimpleBlockElement(1, int16(i*10), i == 0, big)...)
	}
	long := mkv.ClusterStart(uint64(time.Now().UnixMilli()))
	for i := 0; i <= 11; i++ {
		long = append(long, mkv.SimpleBlockElement(1, int16(i*1000), i == 0, []byte{0, 0, 0, 1, 0x65})...)
	}
	tests := []struct {
		name    string
		body    [][]byte
		errorID int
		// persisted fragments acknowledged before the error
		persisted int
	}{
		{"garbage", [][]byte{[]byte("GET / HTTP/1.1\r\nthis is not an MKV stream\r\n")}, ackErrInvalidMKV, 0},
		{"cluster before tracks", [][]byte{mkv.EBMLHeader(), mkv.AppendHeader(nil, mkv.IDSegment, mkv.UnknownSize), clusters[0]}, ackErrInvalidMKV, 0},
		{"truncated cluster", [][]byte{header, clusters[0], clusters[1][:len(clusters[1])-7]}, ackErrInvalidMKV, 1},
		{"timecode going back", [][]byte{header, clusters[1], clusters[0]}, ackErrTimecodeBack, 1},
		{"fragment longer than 10 s", [][]byte{header, long}, ackErrTooLong, 0},
		{"fragment larger than 50 MB", [][]byte{header, oversized}, ackErrTooBig, 0},
		{"block of an undeclared track", [][]byte{header, mkv.ClusterStart(1), mkv.SimpleBlockElement(2, 0, true, []byte{1})}, ackErrTrackMismatch, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			createStream(t, c, "bad-"+filepath.Base(t.Name()), 1)
			createStream(t, c, "good-"+filepath.Base(t.Name()), 1)
			good := openPutMedia(t, c, "good-"+filepath.Base(t.Name()), issuedCreds(c))
			pm := openPutMedia(t, c, "bad-"+filepath.Base(t.Name()), issuedCreds(c))
			for i, b := range tt.body {
				if _, err := pm.w.Write(b); err != nil {
					break // the server may stop reading once it has answered
				}
				if i == len(tt.body)-1 {
					pm.w.Close()
				}
			}
			for i := 0; i < tt.persisted; i++ {
				pm.expectFragment(t, clusterTimecode(t, clusters[i+boolInt(tt.errorID == ackErrTimecodeBack)]))
			}
			pm.expectError(t, tt.errorID)
			st, err := c.KVSStreamStats("bad-" + filepath.Base(t.Name()))
			require.NoError(t, err)
			require.Equal(t, int64(1), st.Errors[itoa(tt.errorID)])

			// Another stream keeps working meanwhile.
			good.write(t, header)
			good.write(t, clusters[0])
			good.write(t, mkv.TagsElement([]mkv.SimpleTag{{Name: "AWS_KINESISVIDEO_END_OF_FRAGMENT"}}))
			good.expectFragment(t, clusterTimecode(t, clusters[0]))
			good.w.Close()
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestPutMediaNewestConnectionWins(t *testing.T) {
	c := start(t, Options{})
	createStream(t, c, "cam", 1)
	frames, track := testFrames(t)
	header, clusters := producerMKV(frames, track, time.Now().UnixMilli())
	old := openPutMedia(t, c, "cam", issuedCreds(c))
	old.write(t, header)
	old.write(t, clusters[0])
	a, ok := old.next(t)
	require.True(t, ok)
	require.Equal(t, "BUFFERING", a.EventType)

	newer := openPutMedia(t, c, "cam", issuedCreds(c))
	newer.write(t, header)
	for {
		_, ok := old.next(t)
		if !ok {
			break // the older connection ended
		}
	}
	newer.write(t, clusters[0])
	newer.write(t, clusters[1])
	newer.expectFragment(t, clusterTimecode(t, clusters[0]))
	newer.w.Close()
}

func TestPutMediaStreamDeleted(t *testing.T) {
	c := start(t, Options{})
	createStream(t, c, "cam", 1)
	frames, track := testFrames(t)
	header, clusters := producerMKV(frames, track, time.Now().UnixMilli())
	pm := openPutMedia(t, c, "cam", issuedCreds(c))
	pm.write(t, header)
	pm.write(t, clusters[0])
	pm.write(t, clusters[1])
	pm.expectFragment(t, clusterTimecode(t, clusters[0]))

	kv := kvsClient(c, c.KVSEndpoint(), viewerCreds(t, c), nil)
	d, err := kv.DescribeStream(ctxT(t), &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam")})
	require.NoError(t, err)
	_, err = kv.DeleteStream(ctxT(t), &kinesisvideo.DeleteStreamInput{StreamARN: d.StreamInfo.StreamARN})
	require.NoError(t, err)
	pm.expectError(t, ackErrStreamDeleted)
	_, err = os.Stat(filepath.Join(c.Paths().KVSData, "cam"))
	require.True(t, os.IsNotExist(err), "the fragments are deleted with the stream")

	// A stream created again under the same name records afresh.
	createStream(t, c, "cam", 1)
	pm = openPutMedia(t, c, "cam", issuedCreds(c))
	pm.write(t, header)
	pm.write(t, clusters[0])
	pm.write(t, clusters[1])
	pm.expectFragment(t, clusterTimecode(t, clusters[0]))
	pm.w.Close()
}

func TestPutMediaIdleAcks(t *testing.T) {
	c := start(t, Options{})
	createStream(t, c, "cam", 1)
	_, track := testFrames(t)
	pm := openPutMedia(t, c, "cam", issuedCreds(c))
	pm.write(t, mkv.StreamStart(1_000_000, "x", track))
	select {
	case a := <-pm.acks:
		require.Equal(t, "IDLE", a.EventType)
	case <-time.After(10 * time.Second):
		t.Fatal("no IDLE ack while nothing arrived")
	}
	pm.w.Close()
}

func TestPutMediaRetention(t *testing.T) {
	c := start(t, Options{})
	createStream(t, c, "keep", 1)
	createStream(t, c, "none", 0)
	frames, track := testFrames(t)
	header, clusters := producerMKV(frames, track, time.Now().UnixMilli())

	// Retention 0: received, never persisted (AWS sends no PERSISTED and keeps nothing).
	pm := openPutMedia(t, c, "none", issuedCreds(c))
	pm.write(t, header)
	pm.write(t, clusters[0])
	pm.write(t, clusters[1])
	for _, want := range []string{"BUFFERING", "RECEIVED", "BUFFERING"} {
		a, ok := pm.next(t)
		require.True(t, ok)
		require.Equal(t, want, a.EventType)
	}
	pm.w.Close()
	_, err := os.Stat(filepath.Join(c.Paths().KVSData, "none"))
	require.True(t, os.IsNotExist(err))

	// Fragments received two hours ago (by the service's clock) expire with a 1 h retention.
	require.NoError(t, c.SetKVSClockSkew(-2*time.Hour))
	pm = openPutMediaAt(t, c, "keep", issuedCreds(c), time.Now().Add(-2*time.Hour))
	pm.write(t, header)
	pm.write(t, clusters[0])
	pm.write(t, clusters[1])
	pm.expectFragment(t, clusterTimecode(t, clusters[0]))
	pm.w.Close() // the end of the body completes the second fragment
	pm.expectFragment(t, clusterTimecode(t, clusters[1]))
	require.NoError(t, c.SetKVSClockSkew(0))
	k, err := c.kvsRunning()
	require.NoError(t, err)
	k.streams.expireAll()
	list, _ := k.streams.media.fragments("keep")
	require.Empty(t, list)
	entries, err := os.ReadDir(filepath.Join(c.Paths().KVSData, "keep"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the index is left")
}

// TestPutMediaDotStreamNames: "." and ".." are valid stream names; their fragments stay in
// their own directories (deleting such a stream deletes nothing else).
func TestPutMediaDotStreamNames(t *testing.T) {
	c := start(t, Options{})
	frames, track := testFrames(t)
	header, clusters := producerMKV(frames, track, time.Now().UnixMilli())
	for _, name := range []string{"..", "."} {
		createStream(t, c, name, 1)
		pm := openPutMedia(t, c, name, issuedCreds(c))
		pm.write(t, header)
		pm.write(t, clusters[0])
		pm.write(t, clusters[1])
		pm.expectFragment(t, clusterTimecode(t, clusters[0]))
		pm.w.Close()
	}
	entries, err := os.ReadDir(c.Paths().KVSData)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"%2E", "%2E%2E"}, names)
	kv := kvsClient(c, c.KVSEndpoint(), viewerCreds(t, c), nil)
	d, err := kv.DescribeStream(ctxT(t), &kinesisvideo.DescribeStreamInput{StreamName: aws.String("..")})
	require.NoError(t, err)
	_, err = kv.DeleteStream(ctxT(t), &kinesisvideo.DeleteStreamInput{StreamARN: d.StreamInfo.StreamARN})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(c.Paths().KVSData, "%2E"))
	require.NoError(t, err, "deleting .. left . alone")
	_, err = os.Stat(c.Paths().KVSStreams)
	require.NoError(t, err)
}

// TestPutMediaAfterRestart: localcloud restarted on the same directory knows its stream
// and fragments; the producer's re-sent fragment is acknowledged with the stored number.
func TestPutMediaAfterRestart(t *testing.T) {
	dir := t.TempDir()
	c := start(t, Options{Dir: dir})
	createStream(t, c, "cam", 1)
	frames, track := testFrames(t)
	header, clusters := producerMKV(frames, track, time.Now().UnixMilli())
	creds := issuedCreds(c)
	pm := openPutMedia(t, c, "cam", creds)
	pm.write(t, header)
	pm.write(t, clusters[0])
	pm.write(t, clusters[1])
	first := pm.expectFragment(t, clusterTimecode(t, clusters[0]))
	require.NoError(t, c.Close())

	// The producer keeps signing with the credentials it holds: they outlive the restart.
	c2 := start(t, Options{Dir: dir})
	pm = openPutMedia(t, c2, "cam", creds)
	pm.write(t, header)
	pm.write(t, clusters[0])
	pm.write(t, clusters[1])
	require.Equal(t, first, pm.expectFragment(t, clusterTimecode(t, clusters[0])), "the re-sent fragment keeps its number")
	pm.w.Close()
	second := pm.expectFragment(t, clusterTimecode(t, clusters[1]))
	require.Greater(t, second, first)
	st, err := c2.KVSStreamStats("cam")
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Duplicates)
	require.Equal(t, int64(1), st.FragmentsPersisted)
}

// TestPutMediaContinuesWithoutHeader: a producer whose connection broke mid-fragment may
// go on where it was on a new connection (kvssink does after failing to connect for a
// while): the fragment is completed with what the broken connection carried and stored with
// the stream's header, also across a restart of localcloud; blocks that do not follow what
// was kept are skipped.
func TestPutMediaContinuesWithoutHeader(t *testing.T) {
	frames, track := testFrames(t)
	header, clusters := producerMKV(frames, track, time.Now().UnixMilli())
	var blocks [][]byte // the blocks of the second fragment
	d := mkv.NewDemuxer(bytes.NewReader(mkv.Concat(header, clusters[1])), mkv.Limits{})
	for {
		ev, err := d.Next()
		if err != nil {
			break
		}
		if ev.Kind == mkv.EventBlock {
			blocks = append(blocks, ev.Raw)
		}
	}
	require.Len(t, blocks, 30)
	tc1 := clusterTimecode(t, clusters[1])

	for _, tt := range []struct {
		name       string
		resumeFrom int // the first block the new connection sends
		completed  bool
	}{
		{"continues where it broke", 10, true},
		{"a frame lost in between", 12, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := start(t, Options{Dir: dir})
			createStream(t, c, "cam", 1)
			creds := issuedCreds(c)
			pm := openPutMedia(t, c, "cam", creds)
			pm.write(t, header)
			pm.write(t, clusters[0])
			broken := mkv.Concat(mkv.ClusterStart(uint64(tc1)), mkv.Concat(blocks[:10]...))
			pm.write(t, broken)
			pm.expectFragment(t, clusterTimecode(t, clusters[0]))
			a, ok := pm.next(t)
			require.True(t, ok)
			require.Equal(t, "BUFFERING", a.EventType)
			sent := int64(len(header) + len(clusters[0]) + len(broken))
			require.Eventually(t, func() bool {
				st, err := c.KVSStreamStats("cam")
				return err == nil && st.BytesIngested == sent
			}, 10*time.Second, 10*time.Millisecond, "localcloud has read what was sent")
			require.NoError(t, c.Close()) // the connection breaks mid-fragment

			c = start(t, Options{Dir: dir})
			pm = openPutMedia(t, c, "cam", creds)
			pm.write(t, mkv.Concat(blocks[tt.resumeFrom:]...))
			pm.write(t, clusters[2])
			pm.w.Close()
			if tt.completed {
				var number string
				for _, want := range []string{"RECEIVED", "PERSISTED"} {
					a, ok := pm.next(t)
					require.True(t, ok)
					require.Equal(t, want, a.EventType)
					require.Equal(t, tc1, *a.FragmentTimecode)
					number = a.FragmentNumber
				}
				probeFrames(t, filepath.Join(c.Paths().KVSData, "cam", number+".mkv"), 30)
			}
			number := pm.expectFragment(t, clusterTimecode(t, clusters[2]))
			probeFrames(t, filepath.Join(c.Paths().KVSData, "cam", number+".mkv"), 30)
			st, err := c.KVSStreamStats("cam")
			require.NoError(t, err)
			require.Empty(t, st.Errors)
			if tt.completed {
				require.Zero(t, st.OrphanBlocks)
			} else {
				require.Equal(t, int64(30-tt.resumeFrom), st.OrphanBlocks)
			}
		})
	}
}
