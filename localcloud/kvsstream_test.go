package localcloud

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/edgecam/edgecam/localcloud/mkv"
	"github.com/stretchr/testify/require"
)

// kvssinkSign signs r as AWS's C producer does (WIRE-FORMATS §6): the listed headers, the
// Host WITHOUT its port, no x-amz-content-sha256 header, payload hash over body.
func kvssinkSign(r *http.Request, creds aws.Credentials, region string, headers []string, body []byte, at time.Time) {
	amzDate := at.UTC().Format("20060102T150405Z")
	date := amzDate[:8]
	r.Header.Set("X-Amz-Date", amzDate)
	if creds.SessionToken != "" {
		r.Header.Set("X-Amz-Security-Token", creds.SessionToken)
	}
	host, _, err := net.SplitHostPort(r.URL.Host)
	if err != nil {
		host = r.URL.Host
	}
	sort.Strings(headers)
	var canon strings.Builder
	canon.WriteString(r.Method + "\n" + r.URL.Path + "\n\n")
	for _, h := range headers {
		v := r.Header.Get(h)
		switch h {
		case "host":
			v = host
		case "transfer-encoding":
			v = "chunked"
		}
		canon.WriteString(h + ":" + v + "\n")
	}
	sum := sha256.Sum256(body)
	canon.WriteString("\n" + strings.Join(headers, ";") + "\n" + hex.EncodeToString(sum[:]))
	creq := sha256.Sum256([]byte(canon.String()))
	scope := date + "/" + region + "/kinesisvideo/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(creq[:])
	mac := func(k []byte, s string) []byte { m := hmac.New(sha256.New, k); m.Write([]byte(s)); return m.Sum(nil) }
	key := mac(mac(mac(mac([]byte("AWS4"+creds.SecretAccessKey), date), region), "kinesisvideo"), "aws4_request")
	r.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		creds.AccessKeyID, scope, strings.Join(headers, ";"), hex.EncodeToString(mac(key, toSign))))
}

// producerPost is a control-plane call as kvssink makes it.
func producerPost(t *testing.T, c *Cloud, creds aws.Credentials, op string, in any) (int, map[string]any, http.Header) {
	t.Helper()
	body, err := json.Marshal(in)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, c.KVSEndpoint()+"/"+op, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("User-Agent", "AWS-SDK-KVS-CPP-CLIENT/3.6.0/1.6.0 GCC/12.2.0 Linux/6.1.0 x86_64")
	req.Host = req.URL.Hostname() // kvssink sends the Host without the port, too
	kvssinkSign(req, creds, c.Region(), []string{"host", "user-agent", "x-amz-date"}, body, time.Now())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func TestKVSStreamControlPlaneAsKVSSink(t *testing.T) {
	c := start(t, Options{})
	creds := issuedCreds(c)
	status, out, h := producerPost(t, c, creds, "describeStream", map[string]string{"StreamName": "cam-1"})
	require.Equal(t, 404, status)
	require.Equal(t, "ResourceNotFoundException", h.Get("x-amzn-ErrorType"))
	require.NotEmpty(t, out["Message"])

	status, out, _ = producerPost(t, c, creds, "createStream", map[string]any{"DeviceName": "edgecam", "StreamName": "cam-1", "MediaType": "video/h264", "DataRetentionInHours": 2})
	require.Equal(t, 200, status, "%v", out)
	arn := out["StreamARN"].(string)
	require.True(t, strings.HasPrefix(arn, "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam-1/"), arn)

	status, _, _ = producerPost(t, c, creds, "tagStream", map[string]any{"StreamARN": arn, "Tags": map[string]string{"thing": "cam"}})
	require.Equal(t, 200, status)
	status, out, _ = producerPost(t, c, creds, "getDataEndpoint", map[string]any{"StreamName": "cam-1", "APIName": "PUT_MEDIA"})
	require.Equal(t, 200, status)
	require.Equal(t, c.KVSEndpoint(), out["DataEndpoint"])

	// A wrong secret is refused even with the quirky header set.
	bad := creds
	bad.SecretAccessKey = "wrong"
	status, _, h = producerPost(t, c, bad, "describeStream", map[string]string{"StreamName": "cam-1"})
	require.Equal(t, 403, status)
	require.Equal(t, "InvalidSignatureException", h.Get("x-amzn-ErrorType"))
}

func TestKVSStreamControlPlaneWithAWSSDK(t *testing.T) {
	c := start(t, Options{KVSChannelActivation: 200 * time.Millisecond})
	kv := kvsClient(c, c.KVSEndpoint(), viewerCreds(t, c), nil)
	ctx := ctxT(t)

	_, err := kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("nope")})
	var notFound *types.ResourceNotFoundException
	require.ErrorAs(t, err, &notFound)

	created, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("sdk-cam"), DataRetentionInHours: aws.Int32(24),
		MediaType: aws.String("video/h264"), DeviceName: aws.String("dev"), Tags: map[string]string{"a": "1"}})
	require.NoError(t, err)
	_, err = kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("sdk-cam")})
	var inUse *types.ResourceInUseException
	require.ErrorAs(t, err, &inUse)
	_, err = kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("bad name!")})
	var invalid *types.InvalidArgumentException
	require.ErrorAs(t, err, &invalid)

	d, err := kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamARN: created.StreamARN})
	require.NoError(t, err)
	si := d.StreamInfo
	require.Equal(t, "sdk-cam", aws.ToString(si.StreamName))
	require.Equal(t, int32(24), aws.ToInt32(si.DataRetentionInHours))
	require.Equal(t, "video/h264", aws.ToString(si.MediaType))
	require.Equal(t, "dev", aws.ToString(si.DeviceName))
	require.NotEmpty(t, aws.ToString(si.KmsKeyId))
	require.WithinDuration(t, time.Now(), aws.ToTime(si.CreationTime), time.Minute)
	require.Contains(t, []types.Status{types.StatusCreating, types.StatusActive}, si.Status)
	require.Eventually(t, func() bool {
		d, err := kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("sdk-cam")})
		return err == nil && d.StreamInfo.Status == types.StatusActive
	}, 5*time.Second, 50*time.Millisecond)

	_, err = kv.TagStream(ctx, &kinesisvideo.TagStreamInput{StreamName: aws.String("sdk-cam"), Tags: map[string]string{"b": "2"}})
	require.NoError(t, err)
	tags, err := kv.ListTagsForStream(ctx, &kinesisvideo.ListTagsForStreamInput{StreamName: aws.String("sdk-cam")})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "1", "b": "2"}, tags.Tags)
	_, err = kv.UntagStream(ctx, &kinesisvideo.UntagStreamInput{StreamName: aws.String("sdk-cam"), TagKeyList: []string{"a"}})
	require.NoError(t, err)

	for _, api := range types.APIName("").Values() {
		ep, err := kv.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("sdk-cam"), APIName: api})
		require.NoError(t, err, api)
		require.Equal(t, c.KVSEndpoint(), aws.ToString(ep.DataEndpoint))
	}
	_, err = kv.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("missing"), APIName: types.APINamePutMedia})
	require.ErrorAs(t, err, &notFound)

	_, err = kv.UpdateDataRetention(ctx, &kinesisvideo.UpdateDataRetentionInput{StreamName: aws.String("sdk-cam"), CurrentVersion: aws.String("stale"),
		Operation: types.UpdateDataRetentionOperationIncreaseDataRetention, DataRetentionChangeInHours: aws.Int32(1)})
	var mismatch *types.VersionMismatchException
	require.ErrorAs(t, err, &mismatch)
	_, err = kv.UpdateDataRetention(ctx, &kinesisvideo.UpdateDataRetentionInput{StreamName: aws.String("sdk-cam"), CurrentVersion: si.Version,
		Operation: types.UpdateDataRetentionOperationDecreaseDataRetention, DataRetentionChangeInHours: aws.Int32(20)})
	require.NoError(t, err)

	_, err = kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("other-cam")})
	require.NoError(t, err)
	list, err := kv.ListStreams(ctx, &kinesisvideo.ListStreamsInput{MaxResults: aws.Int32(1)})
	require.NoError(t, err)
	require.Len(t, list.StreamInfoList, 1)
	require.Equal(t, "other-cam", aws.ToString(list.StreamInfoList[0].StreamName))
	require.NotNil(t, list.NextToken)
	list, err = kv.ListStreams(ctx, &kinesisvideo.ListStreamsInput{NextToken: list.NextToken})
	require.NoError(t, err)
	require.Len(t, list.StreamInfoList, 1)
	require.Equal(t, int32(4), aws.ToInt32(list.StreamInfoList[0].DataRetentionInHours))
	list, err = kv.ListStreams(ctx, &kinesisvideo.ListStreamsInput{StreamNameCondition: &types.StreamNameCondition{ComparisonOperator: types.ComparisonOperatorBeginsWith, ComparisonValue: aws.String("sdk")}})
	require.NoError(t, err)
	require.Len(t, list.StreamInfoList, 1)

	_, err = kv.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: created.StreamARN})
	require.NoError(t, err)
	_, err = kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("sdk-cam")})
	require.ErrorAs(t, err, &notFound)

	// Streams survive a restart with their ARN.
	c.Close()
	c2 := start(t, Options{Dir: filepath.Dir(c.Paths().KVSStreams)})
	kv2 := kvsClient(c2, c2.KVSEndpoint(), viewerCreds(t, c2), nil)
	d, err = kv2.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("other-cam")})
	require.NoError(t, err)
	require.Contains(t, aws.ToString(d.StreamInfo.StreamARN), "stream/other-cam/")
}

// ---- PutMedia ----

var (
	clipOnce   sync.Once
	clipFrames []clipFrame
	clipTrack  mkv.Track
	clipErr    error
)

type clipFrame struct {
	ptsMs int64
	key   bool
	data  []byte
}

// testFrames encodes 6 s of 320x180 15 fps H.264 with a 2 s GOP (GStreamer: x264enc,
// avc, matroskamux) and returns its frames and track.
func testFrames(t *testing.T) ([]clipFrame, mkv.Track) {
	t.Helper()
	clipOnce.Do(func() {
		if _, err := exec.LookPath("gst-launch-1.0"); err != nil {
			clipErr = errors.New("gst-launch-1.0 is not installed: run scripts/install-deps.sh")
			return
		}
		dir, err := os.MkdirTemp("", "kvsclip")
		if err != nil {
			clipErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "clip.mkv")
		cmd := exec.Command("gst-launch-1.0", "-q", "videotestsrc", "num-buffers=90", "pattern=ball", "!", "video/x-raw,width=320,height=180,framerate=15/1",
			"!", "x264enc", "key-int-max=30", "bframes=0", "tune=zerolatency", "!", "h264parse", "!", "video/x-h264,stream-format=avc,alignment=au",
			"!", "matroskamux", "streamable=true", "!", "filesink", "location="+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			clipErr = fmt.Errorf("gst-launch: %w: %s", err, b)
			return
		}
		data, err := os.ReadFile(out)
		if err != nil {
			clipErr = err
			return
		}
		d := mkv.NewDemuxer(bytes.NewReader(data), mkv.Limits{})
		var cluster int64
		for {
			ev, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				clipErr = err
				return
			}
			switch ev.Kind {
			case mkv.EventTracks:
				clipTrack = ev.Tracks[0]
			case mkv.EventClusterStart:
				cluster = ev.Timecode
			case mkv.EventBlock:
				clipFrames = append(clipFrames, clipFrame{ptsMs: cluster + int64(ev.Block.Timecode), key: ev.Block.Keyframe, data: ev.Block.Payload})
			}
		}
	})
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return clipFrames, clipTrack
}

// producerMKV is the body kvssink sends for frames starting at epoch ms base: header, then
// one Cluster per GOP with an absolute timecode.
func producerMKV(frames []clipFrame, track mkv.Track, baseMs int64) (header []byte, clusters [][]byte) {
	header = mkv.StreamStart(1_000_000, "kvssink-test", track)
	var cur []byte
	var clusterTc int64
	for _, f := range frames {
		if f.key {
			if cur != nil {
				clusters = append(clusters, cur)
			}
			clusterTc = baseMs + f.ptsMs
			cur = mkv.ClusterStart(uint64(clusterTc))
		}
		cur = append(cur, mkv.SimpleBlockElement(1, int16(baseMs+f.ptsMs-clusterTc), f.key, f.data)...)
	}
	return header, append(clusters, cur)
}

// putMediaConn is a PutMedia connection as kvssink opens it.
type putMediaConn struct {
	w    *io.PipeWriter
	acks chan ack
	done chan error
}

func openPutMedia(t *testing.T, c *Cloud, stream string, creds aws.Credentials) *putMediaConn {
	t.Helper()
	return openPutMediaAt(t, c, stream, creds, time.Now())
}

// openPutMediaAt signs the request at a chosen time.
func openPutMediaAt(t *testing.T, c *Cloud, stream string, creds aws.Credentials, at time.Time) *putMediaConn {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, c.KVSEndpoint()+"/putMedia", pr)
	require.NoError(t, err)
	req.Header.Set("User-Agent", "AWS-SDK-KVS-CPP-CLIENT/3.6.0")
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("Connection", "keep-alive")
	req.Header.Set("x-amzn-stream-name", stream)
	req.Header.Set("x-amzn-producer-start-timestamp", fmt.Sprintf("%.3f", float64(time.Now().UnixMilli())/1000))
	req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	kvssinkSign(req, creds, c.Region(), []string{"connection", "host", "transfer-encoding", "user-agent", "x-amz-date",
		"x-amzn-fragment-acknowledgment-required", "x-amzn-fragment-timecode-type", "x-amzn-producer-start-timestamp", "x-amzn-stream-name"}, nil, at)
	if creds.SessionToken != "" {
		// kvssink signs the token too when it has one.
		req.Header.Del("Authorization")
		kvssinkSign(req, creds, c.Region(), []string{"connection", "host", "transfer-encoding", "user-agent", "x-amz-date", "x-amz-security-token",
			"x-amzn-fragment-acknowledgment-required", "x-amzn-fragment-timecode-type", "x-amzn-producer-start-timestamp", "x-amzn-stream-name"}, nil, at)
	}
	pc := &putMediaConn{w: pw, acks: make(chan ack, 256), done: make(chan error, 1)}
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	respCh := make(chan *http.Response, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			pc.done <- err
			close(pc.acks)
			return
		}
		respCh <- resp
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var a ack
			if json.Unmarshal(sc.Bytes(), &a) == nil {
				pc.acks <- a
			}
		}
		resp.Body.Close()
		close(pc.acks)
		pc.done <- sc.Err()
	}()
	t.Cleanup(func() { pw.Close() })
	return pc
}

// next returns the next ack that is not IDLE.
func (p *putMediaConn) next(t *testing.T) (ack, bool) {
	t.Helper()
	for {
		select {
		case a, ok := <-p.acks:
			if !ok || a.EventType != "IDLE" {
				return a, ok
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no ack within 20 s")
		}
	}
}

func (p *putMediaConn) write(t *testing.T, b []byte) {
	t.Helper()
	_, err := p.w.Write(b)
	require.NoError(t, err)
}

// expectFragment reads BUFFERING, RECEIVED, PERSISTED for a fragment and returns its number.
func (p *putMediaConn) expectFragment(t *testing.T, timecode int64) string {
	t.Helper()
	var number string
	for _, want := range []string{"BUFFERING", "RECEIVED", "PERSISTED"} {
		a, ok := p.next(t)
		require.True(t, ok, "connection ended before %s", want)
		require.Equal(t, want, a.EventType, "%+v", a)
		require.NotNil(t, a.FragmentTimecode)
		require.Equal(t, timecode, *a.FragmentTimecode)
		number = a.FragmentNumber
	}
	require.NotEmpty(t, number)
	return number
}

func createStream(t *testing.T, c *Cloud, name string, retention int32) {
	t.Helper()
	kv := kvsClient(c, c.KVSEndpoint(), viewerCreds(t, c), nil)
	_, err := kv.CreateStream(ctxT(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String(name), DataRetentionInHours: aws.Int32(retention)})
	require.NoError(t, err)
	// A new stream is CREATING for a while, as on AWS; wait for ACTIVE the way a producer does
	// (kvssink describes the stream until it is), so later checks of its status do not race it.
	require.Eventually(t, func() bool {
		out, err := kv.DescribeStream(ctxT(t), &kinesisvideo.DescribeStreamInput{StreamName: aws.String(name)})
		return err == nil && out.StreamInfo.Status == "ACTIVE"
	}, 30*time.Second, 50*time.Millisecond, "stream %s never became ACTIVE", name)
}

func clusterTimecode(t *testing.T, cluster []byte) int64 {
	d := mkv.NewDemuxer(bytes.NewReader(mkv.Concat(mkv.StreamStart(1_000_000, "x", mkv.Track{Number: 1, Type: 1, CodecID: "V"}), cluster)), mkv.Limits{})
	for {
		ev, err := d.Next()
		require.NoError(t, err)
		if ev.Kind == mkv.EventClusterStart {
			return ev.Timecode
		}
	}
}

func TestPutMediaAcksAndStorage(t *testing.T) {
	c := start(t, Options{})
	createStream(t, c, "cam", 24)
	frames, track := testFrames(t)
	base := time.Now().Add(-time.Minute).UnixMilli()
	header, clusters := producerMKV(frames, track, base)
	require.Len(t, clusters, 3)

	pm := openPutMedia(t, c, "cam", issuedCreds(c))
	pm.write(t, header)
	var numbers []string
	for i, cl := range clusters {
		pm.write(t, cl)
		if i > 0 { // a fragment is complete when the next one starts
			numbers = append(numbers, pm.expectFragment(t, clusterTimecode(t, clusters[i-1])))
		}
	}
	pm.write(t, mkv.TagsElement([]mkv.SimpleTag{{Name: "AWS_KINESISVIDEO_END_OF_FRAGMENT"}}))
	numbers = append(numbers, pm.expectFragment(t, clusterTimecode(t, clusters[2])))
	require.NoError(t, pm.w.Close())
	_, ok := pm.next(t)
	require.False(t, ok, "the connection ends after the body")
	require.NoError(t, <-pm.done)
	require.True(t, sort.StringsAreSorted(numbers), "%v", numbers)

	// Each fragment is a playable MKV on disk.
	dir := filepath.Join(c.Paths().KVSData, "cam")
	for _, n := range numbers {
		probeFrames(t, filepath.Join(dir, n+".mkv"), 30)
	}
	st, err := c.KVSStreamStats("cam")
	require.NoError(t, err)
	require.Equal(t, int64(3), st.FragmentsPersisted)
	require.Equal(t, int64(3), st.Acks["PERSISTED"])
	require.Greater(t, st.BytesIngested, int64(len(header)))

	// kvssink re-sends unacknowledged fragments on a new connection: stored once.
	pm2 := openPutMedia(t, c, "cam", issuedCreds(c))
	pm2.write(t, header)
	pm2.write(t, clusters[1])
	pm2.write(t, mkv.TagsElement([]mkv.SimpleTag{{Name: "AWS_KINESISVIDEO_END_OF_FRAGMENT"}}))
	require.Equal(t, numbers[1], pm2.expectFragment(t, clusterTimecode(t, clusters[1])))
	pm2.w.Close()
	st, err = c.KVSStreamStats("cam")
	require.NoError(t, err)
	require.Equal(t, int64(3), st.FragmentsPersisted)
	require.Equal(t, int64(1), st.Duplicates)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 4) // three fragments and the index

	// The counters over HTTP.
	resp, err := http.Get(c.KVSEndpoint() + "/kvs/streams/cam/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var got StreamStats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Equal(t, int64(3), got.FragmentsPersisted)
}

// probeFrames counts the video frames ffprobe decodes in file.
func probeFrames(t *testing.T, file string, want int) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, fmt.Sprint(want), strings.TrimSpace(string(out)), file)
}

var _ = context.Background
