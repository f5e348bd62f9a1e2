package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/edgecam/edgecam/provisioning"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// These tests record through the real kvssink (scripts/build-kvssink.sh) into localcloud's
// KVS, and check what KVS holds with the read side, as AWS's SDKs call it.

const e2eThing = "BCM2835-00000000e2e0cafe"

// kvsWorld is a localcloud with a stream writer: kvssink's credential file kept fresh from
// localcloud's credentials, and a source playing a clip into a hub.
type kvsWorld struct {
	t      *testing.T
	dir    string
	port   int
	lifeT  time.Duration
	mu     sync.Mutex
	cloud  *localcloud.Cloud
	cancel context.CancelFunc
	creds  string
	proxy  *hostPortProxy // the network, for outages
}

func newKVSWorld(t *testing.T, lifetime time.Duration) *kvsWorld {
	kvssinkForTest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	w := &kvsWorld{t: t, dir: t.TempDir(), port: port, lifeT: lifetime}
	w.start()
	w.proxy = newHostPortProxy(t, "127.0.0.1:"+strconv.Itoa(port))
	t.Cleanup(w.stop)
	// kvssink's credential file, rewritten before each expiry as the agent does it.
	w.creds = filepath.Join(w.dir, "kvssink-credentials")
	// kvssink re-reads the file within 38 s of the expiry it holds: rewrite it before that.
	f := &provisioning.KVSCredentialFile{Path: w.creds, RefreshBefore: max(lifetime-3*time.Second, lifetime/2), Log: zaptest.NewLogger(t).Named("credentials"),
		Provider: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			w.mu.Lock()
			c := w.cloud
			w.mu.Unlock()
			if c == nil {
				return aws.Credentials{}, fmt.Errorf("localcloud is down")
			}
			ic := c.IssueCredentials(e2eThing)
			return aws.Credentials{AccessKeyID: ic.AccessKeyID, SecretAccessKey: ic.SecretAccessKey, SessionToken: ic.SessionToken, CanExpire: true, Expires: ic.Expiration}, nil
		})}
	_, err = f.Update(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func (w *kvsWorld) start() {
	c, err := localcloud.Open(localcloud.Options{Dir: filepath.Join(w.dir, "localcloud"), KVSPort: w.port, CredentialLifetime: w.lifeT,
		AllowSerials: []string{e2eThing}, Log: zaptest.NewLogger(w.t).Named("localcloud")})
	require.NoError(w.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(w.t, c.Start(ctx))
	w.mu.Lock()
	w.cloud, w.cancel = c, cancel
	w.mu.Unlock()
}

func (w *kvsWorld) stop() {
	w.mu.Lock()
	c, cancel := w.cloud, w.cancel
	w.cloud = nil
	w.mu.Unlock()
	if c != nil {
		cancel()
		c.Close()
	}
}

func (w *kvsWorld) endpoint() string { return "http://127.0.0.1:" + strconv.Itoa(w.port) }

// recorder records into stream through the real kvssink, straight to localcloud, or
// through the network proxy (w.proxy) when proxied.
func (w *kvsWorld) recorder(stream string, proxied bool) *KVSSinkRecorder {
	return w.recorderWith(stream, proxied, nil)
}

// recorderWith is recorder with its options adjusted.
func (w *kvsWorld) recorderWith(stream string, proxied bool, adjust func(*KVSSinkOptions)) *KVSSinkRecorder {
	controlPlane := w.endpoint()
	if proxied {
		controlPlane = w.proxy.url()
	}
	klog, err := StartKVSSinkLog(filepath.Join(w.dir, "kvssink-log"), zaptest.NewLogger(w.t, zaptest.Level(zap.InfoLevel)).Named("kvssink"), false)
	require.NoError(w.t, err)
	w.t.Cleanup(klog.Close)
	o := KVSSinkOptions{StreamName: stream, Region: "us-east-1", StorageSizeMB: 64, FragmentDuration: 2 * time.Second,
		RetentionHours: 24, StreamingType: "realtime", CreateStream: true, CredentialFile: w.creds, ControlPlaneURI: controlPlane,
		LogConfig: klog.ConfigPath(), StartupTimeout: 20 * time.Second, Drain: 20 * time.Second, Log: zaptest.NewLogger(w.t, zaptest.Level(zap.InfoLevel))}
	if adjust != nil {
		adjust(&o)
	}
	rec, err := NewKVSSinkRecorder(o)
	require.NoError(w.t, err)
	return rec
}

// post is a read-side call signed with the viewer's key, as AWS's SDKs sign it.
func (w *kvsWorld) post(op string, in any) []byte {
	w.t.Helper()
	w.mu.Lock()
	c := w.cloud
	w.mu.Unlock()
	vc, err := c.ViewerConfig()
	require.NoError(w.t, err)
	body, err := json.Marshal(in)
	require.NoError(w.t, err)
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.endpoint()+"/"+op, bytes.NewReader(body))
	require.NoError(w.t, err)
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	require.NoError(w.t, v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), "kinesisvideo", c.Region(), time.Now()))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(w.t, err)
	require.Equal(w.t, http.StatusOK, resp.StatusCode, "%s: %s", op, out)
	return out
}

type e2eFragment struct {
	Number   string  `json:"FragmentNumber"`
	LengthMs int64   `json:"FragmentLengthInMilliseconds"`
	Producer float64 `json:"ProducerTimestamp"`
	Server   float64 `json:"ServerTimestamp"`
}

func (f e2eFragment) start() time.Time { return time.UnixMilli(int64(f.Producer*1000 + 0.5)) }
func (f e2eFragment) end() time.Time {
	return f.start().Add(time.Duration(f.LengthMs) * time.Millisecond)
}

func (w *kvsWorld) fragments(stream string) []e2eFragment {
	var out struct{ Fragments []e2eFragment }
	require.NoError(w.t, json.Unmarshal(w.post("listFragments", map[string]any{"StreamName": stream}), &out))
	sort.Slice(out.Fragments, func(i, j int) bool { return out.Fragments[i].Producer < out.Fragments[j].Producer })
	return out.Fragments
}

// maxGap is the longest span between a fragment's end and the next one's start.
func maxGap(list []e2eFragment) (time.Duration, time.Time) {
	var gap time.Duration
	var at time.Time
	for i := 1; i < len(list); i++ {
		if d := list[i].start().Sub(list[i-1].end()); d > gap {
			gap, at = d, list[i-1].end()
		}
	}
	return gap, at
}

// capture plays clip in real time into a hub, and records the hub into stream until the clip
// ends (plus what stop says), returning the frames captured and the first frame's wall time.
func (w *kvsWorld) capture(rec *KVSSinkRecorder, clip string, loop bool, during func(ctx context.Context)) (frames uint64, first, last time.Time) {
	hub := NewHub(HubOptions{})
	sub := hub.Subscribe(SubscribeOptions{Name: "kvs", QueueFrames: 1000})
	watch := hub.Subscribe(SubscribeOptions{Name: "watch", QueueFrames: 1000})
	src := fileSource(w.t, clip, loop, hub, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srcCtx, stopSrc := context.WithCancel(ctx)
	defer stopSrc()
	recDone := make(chan error, 1)
	recCtx, stopRec := context.WithCancel(ctx)
	go func() { recDone <- rec.Record(recCtx, sub) }()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			au, err := watch.Next(ctx)
			if err != nil {
				return
			}
			if first.IsZero() {
				first = au.Wall
			}
			last = au.Wall
		}
	}()
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(srcCtx) }()
	if during != nil {
		during(srcCtx)
		stopSrc()
	}
	<-srcDone
	frames = src.FrameCount()
	stopRec()
	require.NoError(w.t, <-recDone)
	cancel()
	<-watched
	return frames, first, last
}

func kvsProbeFrames(t *testing.T, file string) int {
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file).CombinedOutput()
	require.NoError(t, err, "ffprobe %s: %s", file, out)
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	require.NoError(t, err, "ffprobe: %s", out)
	return n
}

func TestKVSSinkRecordsClipIntoLocalcloud(t *testing.T) {
	w := newKVSWorld(t, time.Hour)
	clip, side := testclip.Path(t, testclip.Ball)
	rec := w.recorder(e2eThing, false)
	frames, first, last := w.capture(rec, clip, false, nil)
	require.EqualValues(t, side.Frames, frames, "the source played the whole clip")

	list := w.fragments(e2eThing)
	require.NotEmpty(t, list)
	gop := time.Duration(side.GOPSeconds * float64(time.Second))
	gap, at := maxGap(list)
	t.Logf("%d frames captured %s → %s; %d fragments %s → %s, largest gap %s at %s; kvssink stats %+v",
		frames, first.Format("15:04:05.000"), last.Format("15:04:05.000"), len(list), list[0].start().Format("15:04:05.000"),
		list[len(list)-1].end().Format("15:04:05.000"), gap, at.Format("15:04:05.000"), rec.Stats())
	require.LessOrEqual(t, gap, gop, "no gap above one GOP")
	// Producer timestamps are the capture wall time.
	require.WithinDuration(t, first, list[0].start(), time.Second)
	require.WithinDuration(t, last, list[len(list)-1].end(), time.Second)
	// The clip KVS returns decodes with every captured frame.
	clipBody := w.post("getClip", map[string]any{"StreamName": e2eThing, "ClipFragmentSelector": map[string]any{
		"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": map[string]any{
			"StartTimestamp": float64(list[0].start().Add(-time.Second).UnixMilli()) / 1000, "EndTimestamp": float64(list[len(list)-1].end().Add(time.Second).UnixMilli()) / 1000}}})
	file := filepath.Join(t.TempDir(), "clip.mp4")
	require.NoError(t, os.WriteFile(file, clipBody, 0o600))
	require.Equal(t, int(frames), kvsProbeFrames(t, file), "GetClip holds every captured frame")
}

// hostPortProxy stands for the network between kvssink and localcloud: down cuts it (the
// listener and every connection), up restores it. It forwards 127.0.0.1 connections to
// target, naming itself in the first request's Host header of each connection (kvssink
// sends the Host without its port), so that GetDataEndpoint points PutMedia through it too.
type hostPortProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newHostPortProxy(t *testing.T, target string) *hostPortProxy {
	t.Helper()
	p := &hostPortProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *hostPortProxy) url() string { return "http://" + p.addr }

// down closes the listener and every connection.
func (p *hostPortProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// up listens again on the same address.
func (p *hostPortProxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(p.t, err)
	p.serve(ln)
}

func (p *hostPortProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *hostPortProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	_, port, _ := net.SplitHostPort(p.addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", p.target)
				if err != nil {
					return
				}
				defer up.Close()
				p.track(c, true)
				p.track(up, true)
				defer p.track(c, false)
				defer p.track(up, false)
				// The header block, rewritten, then bytes as they come both ways.
				var head []byte
				buf := make([]byte, 4096)
				for !bytes.Contains(head, []byte("\r\n\r\n")) {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					head = append(head, buf[:n]...)
				}
				i := bytes.Index(head, []byte("\r\n\r\n"))
				lines := strings.Split(string(head[:i]), "\r\n")
				for j, l := range lines {
					if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "host") {
						h := strings.TrimSpace(v)
						if hh, _, err := net.SplitHostPort(h); err == nil {
							h = hh
						}
						lines[j] = k + ": " + h + ":" + port
					}
				}
				if _, err := up.Write(append([]byte(strings.Join(lines, "\r\n")), head[i:]...)); err != nil {
					return
				}
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}

func TestKVSSinkResumesAfterNetworkOutage(t *testing.T) {
	w := newKVSWorld(t, time.Hour)
	clip, side := testclip.Path(t, testclip.Ball)
	rec := w.recorder(e2eThing, true)
	var downAt, upAt time.Time
	_, first, last := w.capture(rec, clip, true, func(ctx context.Context) {
		require.Eventually(t, func() bool { return rec.Stats().Persisted >= 3 }, 30*time.Second, 50*time.Millisecond, "recording started")
		// The network to KVS goes down for 10 s. (A restart of localcloud itself would also
		// forget the credentials it issued, which real AWS does not do: kvssink then gets
		// 403 until it re-reads its file.)
		downAt = time.Now()
		w.proxy.down()
		time.Sleep(10 * time.Second) // the outage itself
		w.proxy.up()
		upAt = time.Now()
		before := rec.Stats().Persisted
		require.Eventually(t, func() bool { return rec.Stats().Persisted >= before+4 }, 60*time.Second, 50*time.Millisecond,
			"kvssink resumes by itself after the network comes back")
	})
	list := w.fragments(e2eThing)
	gap, at := maxGap(list)
	t.Logf("KVS unreachable %s → %s; captured %s → %s; %d fragments %s → %s; largest gap %s at %s; kvssink stats %+v",
		downAt.Format("15:04:05.000"), upAt.Format("15:04:05.000"), first.Format("15:04:05.000"), last.Format("15:04:05.000"), len(list),
		list[0].start().Format("15:04:05.000"), list[len(list)-1].end().Format("15:04:05.000"), gap, at.Format("15:04:05.000"), rec.Stats())
	require.True(t, list[len(list)-1].start().After(upAt.Add(-time.Duration(side.GOPSeconds*float64(time.Second)))), "fragments after the outage")
	require.Less(t, gap, 10*time.Second+time.Duration(side.GOPSeconds*float64(time.Second)), "at most the outage is missing")
}

// The credentials kvssink reads from its file expire during the recording and are rolled
// over: no fragment is missing. The long variant is the issue's check (a 2-minute lifetime
// over 5 minutes); the short one crosses one expiry.
func TestKVSSinkCredentialsRollOver(t *testing.T) {
	lifetime, record := 45*time.Second, 55*time.Second
	if os.Getenv("EDGECAM_LONG_TESTS") == "1" {
		lifetime, record = 2*time.Minute, 5*time.Minute
	}
	w := newKVSWorld(t, lifetime)
	clip, side := testclip.Path(t, testclip.Ball)
	rec := w.recorder(e2eThing, false)
	_, first, last := w.capture(rec, clip, true, func(ctx context.Context) {
		select {
		case <-time.After(record):
		case <-ctx.Done():
		}
	})
	list := w.fragments(e2eThing)
	gap, at := maxGap(list)
	t.Logf("credentials for %s over %s: captured %s → %s; %d fragments %s → %s; largest gap %s at %s; kvssink stats %+v",
		lifetime, record, first.Format("15:04:05.000"), last.Format("15:04:05.000"), len(list), list[0].start().Format("15:04:05.000"),
		list[len(list)-1].end().Format("15:04:05.000"), gap, at.Format("15:04:05.000"), rec.Stats())
	require.LessOrEqual(t, gap, time.Duration(side.GOPSeconds*float64(time.Second)), "no gap above one GOP")
	require.WithinDuration(t, last, list[len(list)-1].end(), 3*time.Second, "recorded to the end, past the first credentials' expiry")
}

// KVS unreachable when recording starts (a camera that boots before its network): kvssink
// gets no acknowledgement within its start-up time-out, RecordLoop gives up on it (saying
// why) and starts a new one with back-off, and recording starts by itself once KVS is
// reachable.
func TestKVSSinkRecordLoopRestartsUntilKVSIsReachable(t *testing.T) {
	w := newKVSWorld(t, time.Hour)
	clip, _ := testclip.Path(t, testclip.Ball)
	w.proxy.down() // KVS unreachable from the start
	rec := w.recorderWith(e2eThing, true, func(o *KVSSinkOptions) { o.StartupTimeout = 3 * time.Second })
	core, logs := observer.New(zap.WarnLevel)
	hub := NewHub(HubOptions{})
	subscribe := func() *Subscription { return hub.Subscribe(SubscribeOptions{Name: "kvs", QueueFrames: 1000}) }
	src := fileSource(t, clip, true, hub, true)
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan error, 1)
	go func() { loopDone <- RecordLoop(ctx, rec, subscribe(), subscribe, zap.New(core)) }()
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx) }()
	defer func() {
		cancel()
		<-srcDone
		require.NoError(t, <-loopDone)
	}()

	start := time.Now()
	restarted := func() []observer.LoggedEntry {
		return logs.FilterMessage("recording failed; starting it again").All()
	}
	require.Eventually(t, func() bool { return len(restarted()) >= 1 }, time.Minute, 50*time.Millisecond,
		"kvssink given up on while KVS is unreachable")
	var reason error
	for _, f := range restarted()[0].Context {
		if f.Key == "error" {
			reason, _ = f.Interface.(error)
		}
	}
	require.ErrorIs(t, reason, ErrKVSUnreachable, "the log says why: KVS is unreachable")
	w.proxy.up()
	upAt := time.Now()
	t.Logf("KVS unreachable for %s: kvssink given up on after %s", upAt.Sub(start).Round(100*time.Millisecond), restarted()[0].Time.Sub(start).Round(100*time.Millisecond))
	// The kvssink given up on blocks in its stream set-up until its control-plane calls time
	// out: the next one waits for it.
	require.Eventually(t, func() bool { return rec.Stats().Persisted >= 2 }, 4*time.Minute, 50*time.Millisecond,
		"recording starts by itself once KVS is reachable")
	require.GreaterOrEqual(t, rec.Stats().Sessions, 2, "a new kvssink records")
	list := w.fragments(e2eThing)
	require.NotEmpty(t, list)
	t.Logf("second fragment persisted %s after KVS became reachable; kvssink stats %+v",
		time.Since(upAt).Round(100*time.Millisecond), rec.Stats())
}
