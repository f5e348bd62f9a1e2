package kvsupload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/edgecam/edgecam/media"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// cloudRig runs a real localcloud that can be stopped and started again on the same port and
// directory (an outage), and hands out credentials it issued, as the IoT credentials provider.
type cloudRig struct {
	t    *testing.T
	dir  string
	port int

	mu     sync.Mutex
	cloud  *localcloud.Cloud
	cancel context.CancelFunc
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newCloudRig(t *testing.T) *cloudRig {
	r := &cloudRig{t: t, dir: t.TempDir(), port: freePort(t)}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *cloudRig) start() {
	c, err := localcloud.Open(localcloud.Options{Dir: r.dir, KVSPort: r.port, Log: zaptest.NewLogger(r.t).Named("localcloud")})
	require.NoError(r.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(r.t, c.Start(ctx))
	r.mu.Lock()
	r.cloud, r.cancel = c, cancel
	r.mu.Unlock()
}

func (r *cloudRig) stop() {
	r.mu.Lock()
	c, cancel := r.cloud, r.cancel
	r.cloud = nil
	r.mu.Unlock()
	if c != nil {
		cancel()
		_ = c.Close()
	}
}

func (r *cloudRig) current() *localcloud.Cloud {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cloud
}

func (r *cloudRig) endpoint() string { return "http://127.0.0.1:" + strconv.Itoa(r.port) }

// credentials issues credentials from whichever localcloud runs (a restarted one forgets what
// the previous one issued: the uploader must fetch new ones when refused).
func (r *cloudRig) credentials() aws.CredentialsProvider {
	return aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		c := r.current()
		if c == nil {
			return aws.Credentials{}, io.ErrUnexpectedEOF
		}
		ic := c.IssueCredentials("cam-thing")
		return aws.Credentials{AccessKeyID: ic.AccessKeyID, SecretAccessKey: ic.SecretAccessKey, SessionToken: ic.SessionToken,
			CanExpire: true, Expires: ic.Expiration, Source: "localcloud"}, nil
	}))
}

// post makes a signed KVS call and decodes its JSON answer (raw when out is nil).
func (r *cloudRig) post(t *testing.T, creds aws.CredentialsProvider, path string, in any, out any) []byte {
	t.Helper()
	body, err := json.Marshal(in)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, r.endpoint()+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	c, err := creds.Retrieve(context.Background())
	require.NoError(t, err)
	sum := sha256.Sum256(body)
	require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), c, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-east-1", time.Now()))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, b)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out))
	}
	return b
}

type listedFragment struct {
	FragmentNumber    string  `json:"FragmentNumber"`
	ProducerTimestamp float64 `json:"ProducerTimestamp"`
}

// storedInKVS lists the stream's fragments (ListFragments, oldest first) and counts the frames
// of all of them (GetMediaForFragmentList, decoded by ffprobe).
func (r *cloudRig) storedInKVS(t *testing.T, creds aws.CredentialsProvider, stream string) ([]int64, int) {
	t.Helper()
	var all []listedFragment
	next := ""
	for {
		in := map[string]any{"StreamName": stream, "MaxResults": 1000}
		if next != "" {
			in["NextToken"] = next
		}
		var out struct {
			Fragments []listedFragment `json:"Fragments"`
			NextToken string           `json:"NextToken"`
		}
		r.post(t, creds, "/listFragments", in, &out)
		all = append(all, out.Fragments...)
		if out.NextToken == "" {
			break
		}
		next = out.NextToken
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ProducerTimestamp < all[j].ProducerTimestamp })
	var tcs []int64
	var numbers []string
	for _, f := range all {
		tcs = append(tcs, int64(f.ProducerTimestamp*1000+0.5))
		numbers = append(numbers, f.FragmentNumber)
	}
	if len(numbers) == 0 {
		return nil, 0
	}
	frames := 0
	for i := 0; i < len(numbers); i += 100 { // GetMediaForFragmentList takes up to 1000; keep requests small
		mkv := r.post(t, creds, "/getMediaForFragmentList", map[string]any{"StreamName": stream, "Fragments": numbers[i:min(i+100, len(numbers))]}, nil)
		path := filepath.Join(t.TempDir(), "media.mkv")
		require.NoError(t, os.WriteFile(path, mkv, 0o600))
		n, err := strconv.Atoi(ffprobe(t, path).Streams[0].ReadFrames)
		require.NoError(t, err)
		frames += n
	}
	return tcs, frames
}

// rebase stamps access units on a wall clock that ends now (KVS keeps recent fragments).
func rebase(aus []media.AccessUnit) []media.AccessUnit {
	out := append([]media.AccessUnit(nil), aus...)
	last := out[len(out)-1].PTS
	base := time.Now().Add(-last - time.Second)
	for i := range out {
		out[i].Wall = base.Add(out[i].PTS)
		out[i].Seq = 0
	}
	return out
}

// nativeRig is the whole native path: Hub → Recorder → Spool → Uploader → localcloud.
type nativeRig struct {
	hub   *media.Hub
	spool *Spool
	rec   *Recorder
	up    *Uploader
	done  chan struct{}
	upErr chan error
	stop  context.CancelFunc
}

func startNative(t *testing.T, cloud *cloudRig, spoolDir string, mod func(*UploaderOptions)) *nativeRig {
	sp, err := OpenSpool(SpoolOptions{Dir: spoolDir, Log: zaptest.NewLogger(t).Named("spool")})
	require.NoError(t, err)
	rec, err := NewRecorder(RecorderOptions{Spool: sp})
	require.NoError(t, err)
	o := UploaderOptions{Spool: sp, StreamName: "cam", Region: "us-east-1", Credentials: cloud.credentials(),
		ControlPlaneURL: cloud.endpoint(), CreateStream: true, DataRetentionHours: 24, Deduplicate: true,
		MaxBackoff: 500 * time.Millisecond, AckTimeout: 5 * time.Second, Log: zaptest.NewLogger(t).Named("uploader")}
	if mod != nil {
		mod(&o)
	}
	up, err := NewUploader(o)
	require.NoError(t, err)
	hub := media.NewHub(media.HubOptions{QueueFrames: 4096})
	ctx, cancel := context.WithCancel(context.Background())
	n := &nativeRig{hub: hub, spool: sp, rec: rec, up: up, done: make(chan struct{}), upErr: make(chan error, 1), stop: cancel}
	sub := hub.Subscribe(media.SubscribeOptions{Name: "kvs-native", QueueFrames: 4096})
	go func() {
		defer close(n.done)
		_ = rec.Record(ctx, sub)
	}()
	go func() { n.upErr <- up.Run(ctx) }()
	return n
}

// waitDrained waits until the spool holds nothing (every fragment PERSISTED).
func (n *nativeRig) waitDrained(t *testing.T, limit time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := n.spool.Stats()
		return st.Fragments == 0 && st.Appended > 0
	}, limit, 50*time.Millisecond, "spool not drained: %+v; uploader %+v", n.spool.Stats(), n.up.Stats())
}

func TestNativeIntoLocalcloudAcrossOutage(t *testing.T) {
	seconds, outageFrom, outageTo, speed := 24, 6, 16, 8.0
	if os.Getenv("EDGECAM_LONG_TESTS") == "1" {
		seconds, outageFrom, outageTo, speed = 180, 60, 120, 1 // 3 minutes, 60 s outage, real time
	}
	aus := rebase(encode(t, "320x240", 15, seconds, 15))
	cloud := newCloudRig(t)
	n := startNative(t, cloud, t.TempDir(), nil)

	frame := time.Duration(float64(time.Second) / 15 / speed)
	tick := time.NewTicker(frame)
	for i, au := range aus {
		switch i {
		case outageFrom * 15:
			cloud.stop()
			t.Logf("localcloud stopped at frame %d", i)
		case outageTo * 15:
			cloud.start()
			t.Logf("localcloud started again at frame %d; spool %+v", i, n.spool.Stats())
		}
		n.hub.Publish(au)
		<-tick.C
	}
	tick.Stop()
	n.hub.Close()
	<-n.done
	n.waitDrained(t, 2*time.Minute)
	st := n.up.Stats()
	t.Logf("uploader: %+v", st)
	t.Logf("spool: %+v", n.spool.Stats())
	rs := n.rec.Stats()
	require.EqualValues(t, len(aus), rs.Fragmenter.Frames, "every captured frame fragmented")
	require.EqualValues(t, seconds, rs.Spooled)

	tcs, frames := cloud.storedInKVS(t, cloud.credentials(), "cam")
	require.Len(t, tcs, seconds, "one fragment per GOP, none twice")
	require.True(t, sort.SliceIsSorted(tcs, func(i, j int) bool { return tcs[i] < tcs[j] }))
	for i := 1; i < len(tcs); i++ {
		require.Greater(t, tcs[i], tcs[i-1], "no duplicate timecodes")
	}
	require.Equal(t, len(aus), frames, "every captured frame is in KVS")
	require.Equal(t, aus[0].Wall.UnixMilli(), tcs[0])
	ks, err := cloud.current().KVSStreamStats("cam")
	require.NoError(t, err)
	require.Zero(t, ks.Duplicates, "localcloud saw no fragment twice after its restart")
	n.stop()
	require.NoError(t, <-n.upErr)
	require.NoError(t, n.spool.Close())
	_ = exec.ErrNotFound
}

// A long outage fills the spool past its bound: the oldest fragments go first, the recording
// goes on, the counters say how much was dropped, and what is left reaches KVS once it is back.
func TestNativeSpoolBoundDuringOutage(t *testing.T) {
	aus := rebase(encode(t, "320x240", 15, 30, 15))
	cloud := newCloudRig(t)
	cloud.stop() // down from the start
	dir := t.TempDir()
	sp, err := OpenSpool(SpoolOptions{Dir: dir, MaxBytes: 400_000, Log: zaptest.NewLogger(t)})
	require.NoError(t, err)
	rec, err := NewRecorder(RecorderOptions{Spool: sp})
	require.NoError(t, err)
	hub := media.NewHub(media.HubOptions{QueueFrames: 4096})
	sub := hub.Subscribe(media.SubscribeOptions{Name: "kvs-native", QueueFrames: 4096})
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		_ = rec.Record(context.Background(), sub)
	}()
	for _, au := range aus {
		hub.Publish(au)
	}
	require.Eventually(t, func() bool {
		subs := hub.Stats().Subscribers
		return len(subs) == 1 && subs[0].Delivered == uint64(len(aus))
	}, time.Minute, 10*time.Millisecond, "the recorder takes every frame")
	hub.Close()
	<-recDone
	st := sp.Stats()
	t.Logf("spool after the outage: %+v", st)
	require.LessOrEqual(t, st.Bytes, int64(400_000))
	require.Positive(t, st.DroppedFragments)
	require.EqualValues(t, 30, int(st.DroppedFragments)+st.Fragments, "every fragment either waits or is counted as dropped")

	cloud.start()
	up, err := NewUploader(UploaderOptions{Spool: sp, StreamName: "cam", Region: "us-east-1", Credentials: cloud.credentials(),
		ControlPlaneURL: cloud.endpoint(), CreateStream: true, DataRetentionHours: 24, Deduplicate: true, Log: zaptest.NewLogger(t)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	upDone := make(chan error, 1)
	go func() { upDone <- up.Run(ctx) }()
	require.Eventually(t, func() bool { return sp.Stats().Fragments == 0 }, time.Minute, 50*time.Millisecond)
	cancel()
	require.NoError(t, <-upDone)
	tcs, _ := cloud.storedInKVS(t, cloud.credentials(), "cam")
	require.Len(t, tcs, st.Fragments)
	// The newest survived: the stored ones are the last GOPs of the recording.
	first := aus[int(st.DroppedFragments)*15].Wall.UnixMilli()
	require.Equal(t, first, tcs[0], "the oldest were dropped, the newest kept")
	require.NoError(t, sp.Close())
}
