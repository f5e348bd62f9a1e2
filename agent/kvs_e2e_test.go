package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// kvssinkDir is the kvssink built by scripts/build-kvssink.sh, or skips the test.
func kvssinkDir(t *testing.T) string {
	t.Helper()
	dir, err := testclip.KVSSinkDir()
	if err != nil {
		t.Skip(err)
	}
	return dir
}

// restartableCloud is a localcloud on fixed ports, so that the agent finds it again after
// a restart.
type restartableCloud struct {
	t      *testing.T
	opts   localcloud.Options
	cloud  *localcloud.Cloud
	cancel context.CancelFunc
}

func (r *restartableCloud) start() {
	c, err := localcloud.Open(r.opts)
	require.NoError(r.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(r.t, c.Start(ctx))
	r.cloud, r.cancel = c, cancel
}

func (r *restartableCloud) stop() {
	if r.cloud != nil {
		r.cancel()
		r.cloud.Close()
		r.cloud = nil
	}
}

// kvsAgent runs an agent that records the ball clip (looped) into localcloud's KVS through
// the real kvssink.
func kvsAgent(t *testing.T, adjust func(*config.Config)) (*restartableCloud, *Agent) {
	return kvsAgentWithLog(t, adjust, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
}

// kvsAgentWithLog is kvsAgent with the agent's logger.
func kvsAgentWithLog(t *testing.T, adjust func(*config.Config), log *zap.Logger) (*restartableCloud, *Agent) {
	dir := kvssinkDir(t)
	clip, _ := testclip.Path(t, testclip.Ball)
	rc := &restartableCloud{t: t, opts: localcloud.Options{Dir: t.TempDir(), AllowSerials: []string{liveThing},
		MQTTPort: freePort(t), CredentialsPort: freePort(t), KVSPort: freePort(t), Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named("localcloud")}}
	rc.start()
	t.Cleanup(rc.stop)
	cfg := cloudConfig(t, rc.cloud)
	cfg.Device.Serial = liveThing
	cfg.WebRTC.Enabled = false
	cfg.Media.Source.Kind, cfg.Media.Source.Path, cfg.Media.Source.Loop = config.SourceFile, clip, true
	cfg.Recording.Mode = config.RecordContinuous
	cfg.Recording.Local.Enabled = false
	cfg.Recording.KVS.Enabled = true
	cfg.Recording.KVS.PluginDir = dir
	cfg.Recording.KVS.StartupTimeout = 10 * time.Second
	if adjust != nil {
		adjust(&cfg)
	}
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg, RequireCloud: true, Log: log})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return rc, a
}

func persisted(rc *restartableCloud, stream string) int64 {
	if rc.cloud == nil {
		return 0
	}
	st, err := rc.cloud.KVSStreamStats(stream)
	if err != nil {
		return 0
	}
	return st.FragmentsPersisted
}

// The agent finds kvssink in recording.kvs.plugin_dir, creates the thing's stream and
// records into it.
func TestAgentRecordsIntoKVSThroughKVSSink(t *testing.T) {
	rc, a := kvsAgent(t, nil)
	require.Eventually(t, func() bool { return a.Thing() != "" && persisted(rc, a.Thing()) >= 3 }, 60*time.Second, 100*time.Millisecond,
		"fragments persisted in the thing's stream")
	require.Empty(t, a.Recordings(), "no local segments: kvssink is found")
}

// localcloud stopped for 10 s mid-recording and started again: kvssink keeps what it could
// not send and resumes by itself. Should the restarted service refuse the credentials, the
// agent's stall detection restarts kvssink and its preflight has them fetched again.
func TestAgentKVSResumesAfterLocalcloudRestart(t *testing.T) {
	rc, a := kvsAgent(t, nil)
	require.Eventually(t, func() bool { return a.Thing() != "" && persisted(rc, a.Thing()) >= 3 }, 60*time.Second, 100*time.Millisecond)
	rc.stop()
	down := time.Now()
	time.Sleep(10 * time.Second) // the outage itself
	rc.start()
	up := time.Now()
	var first time.Duration
	require.Eventually(t, func() bool {
		n := persisted(rc, a.Thing())
		if n > 0 && first == 0 {
			first = time.Since(up)
		}
		// The outage's 5 fragments that kvssink kept, then 5 recorded live.
		return n >= 10
	}, 4*time.Minute, 200*time.Millisecond, "recording resumes by itself after localcloud restarts")
	t.Logf("localcloud down %s for %s; first fragment persisted %s after it came back, 10 fragments (the outage's and live ones) %s after",
		down.Format("15:04:05"), up.Sub(down).Round(time.Second), first.Round(100*time.Millisecond), time.Since(up).Round(100*time.Millisecond))
}

// With recording.kvs.create_stream false, a stream that does not exist is not created: the
// agent says so and what to do, and keeps trying with back-off; once someone creates the
// stream, kvssink records into it.
func TestAgentKVSSinkStreamNotCreatedWhenNotAllowed(t *testing.T) {
	const stream = "made-by-hand"
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core(), core))
	rc, a := kvsAgentWithLog(t, func(c *config.Config) {
		c.Recording.KVS.CreateStream = false
		c.Recording.KVS.StreamName = stream
	}, log)
	failures := func() []observer.LoggedEntry {
		return logs.FilterMessage("recording failed; starting it again").All()
	}
	require.Eventually(t, func() bool { return len(failures()) >= 1 }, time.Minute, 50*time.Millisecond,
		"recording fails while the stream does not exist")
	var reason string
	for _, f := range failures()[0].Context {
		if f.Key == "error" {
			if err, ok := f.Interface.(error); ok {
				reason = err.Error()
			}
		}
	}
	require.Contains(t, reason, "KVS stream "+stream+" does not exist")
	require.Contains(t, reason, "recording.kvs.create_stream is false", "the message names the setting")
	var out struct{ StreamInfo struct{ Status string } }
	require.Equal(t, http.StatusNotFound, kvsControlPlane(t, rc.cloud, "describeStream", map[string]any{"StreamName": stream}, &out),
		"the agent did not create the stream")

	require.Equal(t, http.StatusOK, kvsControlPlane(t, rc.cloud, "createStream",
		map[string]any{"StreamName": stream, "MediaType": "video/h264", "DataRetentionInHours": 24}, nil))
	require.Eventually(t, func() bool { return persisted(rc, stream) >= 2 }, 2*time.Minute, 100*time.Millisecond,
		"kvssink records once the stream exists")
	require.Equal(t, stream, a.cfg.Recording.KVS.StreamName)
	t.Logf("%d failed attempts before the stream was created, then %d fragments persisted", len(failures()), persisted(rc, stream))
}

// kvsControlPlane is a KVS control-plane call signed with localcloud's viewer key (what a
// user's own AWS SDK would do); it returns the HTTP status and decodes a 200 answer into out.
func kvsControlPlane(t *testing.T, cloud *localcloud.Cloud, op string, in, out any) int {
	t.Helper()
	status, data := kvsSignedCall(t, cloud, op, in)
	if status == http.StatusOK && out != nil {
		require.NoError(t, json.Unmarshal(data, out), "%s: %s", op, data)
	}
	return status
}

// kvsSignedCall posts in as JSON to a KVS operation, signed with the viewer's key as AWS's
// SDKs sign it, and returns the HTTP status and the answer's body.
func kvsSignedCall(t *testing.T, cloud *localcloud.Cloud, op string, in any) (int, []byte) {
	t.Helper()
	vc, err := cloud.ViewerConfig()
	require.NoError(t, err)
	body, err := json.Marshal(in)
	require.NoError(t, err)
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cloud.KVSEndpoint()+"/"+op, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	require.NoError(t, v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), "kinesisvideo", cloud.Region(), time.Now()))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}
