package agent

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/edgecam/edgecam/motion"
	"github.com/stretchr/testify/require"
)

func cloudConfig(t testing.TB, cloud *localcloud.Cloud) config.Config {
	cfg := testConfig(t)
	cloud.ConfigureAgent(&cfg)
	cfg.Device.Serial = "cam-agent-1"
	cfg.Provisioning.Timeout = 5 * time.Second
	cfg.Telemetry.Interval = time.Second
	cfg.Recording.Mode = config.RecordOff
	require.Empty(t, cfg.Validate())
	return cfg
}

func startCloud(t testing.TB, serials ...string) *localcloud.Cloud {
	return startCloudWith(t, localcloud.Options{AllowSerials: serials})
}

func startCloudWith(t testing.TB, opts localcloud.Options) *localcloud.Cloud {
	opts.Dir = t.TempDir()
	cloud, err := localcloud.Open(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); cloud.Close() })
	require.NoError(t, cloud.Start(ctx))
	return cloud
}

type statusLog struct {
	mu   sync.Mutex
	msgs []Status
}

func (s *statusLog) add(_ string, payload []byte) {
	var st Status
	if json.Unmarshal(payload, &st) == nil {
		s.mu.Lock()
		s.msgs = append(s.msgs, st)
		s.mu.Unlock()
	}
}

func (s *statusLog) states() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		out = append(out, m.State)
	}
	return out
}

func TestAgentProvisionsAndReportsStatus(t *testing.T) {
	cloud := startCloud(t, "cam-agent-1")
	cfg := cloudConfig(t, cloud)
	var log statusLog
	require.NoError(t, cloud.Observe("edgecam/+/status", log.add))

	a, err := New(Options{Config: cfg, Version: "test", RequireCloud: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	require.Eventually(t, func() bool { return len(log.states()) >= 2 }, 20*time.Second, 50*time.Millisecond, "status every second")
	require.Equal(t, "cam-agent-1", a.Thing())
	_, ok := cloud.Thing("cam-agent-1")
	require.True(t, ok)

	// AWS credentials are there for live view; kvssink's credential file is not written:
	// KVS recording is off, nothing reads it.
	require.Eventually(t, func() bool { return a.Credentials() != nil }, 10*time.Second, 20*time.Millisecond)
	creds, err := a.Credentials().Retrieve(ctx)
	require.NoError(t, err)
	_, issued := cloud.Credentials(creds.AccessKeyID)
	require.True(t, issued)
	require.NoFileExists(t, cfg.KVSSinkCredentialFile())

	cancel()
	require.NoError(t, <-done)
	// The broker acknowledges a QoS 1 publish before it hands the message to its inline
	// subscribers, so the last status may reach the observer just after Run returns.
	require.Eventually(t, func() bool {
		states := log.states()
		return states[len(states)-1] == "stopped"
	}, 5*time.Second, 10*time.Millisecond, "a clean stop says so: %v", log.states())
	states := log.states()
	require.Equal(t, "running", states[0])
	log.mu.Lock()
	last := log.msgs[len(log.msgs)-1]
	log.mu.Unlock()
	require.Equal(t, "test", last.Version)
	require.Equal(t, "cam-agent-1", last.ThingName)
	require.Positive(t, last.Video.Frames)

	// A second run uses the stored identity: no new thing certificate.
	thing, _ := cloud.Thing("cam-agent-1")
	a2, err := New(Options{Config: cfg, RequireCloud: true})
	require.NoError(t, err)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel2()
	require.NoError(t, a2.Run(ctx2))
	again, _ := cloud.Thing("cam-agent-1")
	require.Equal(t, thing.Certificates, again.Certificates)
}

func TestAgentRefusedProvisioning(t *testing.T) {
	cloud := startCloud(t) // empty allow-list
	cfg := cloudConfig(t, cloud)
	a, err := New(Options{Config: cfg, RequireCloud: true})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = a.Run(ctx)
	require.ErrorContains(t, err, "statusCode 403")
	require.ErrorContains(t, err, "cam-agent-1")
}

func TestAgentWithoutCloudRecordsAnyway(t *testing.T) {
	// The endpoint is down: without RequireCloud the video runs and the link keeps trying.
	cfg := testConfig(t)
	cfg.IoT.Endpoint = "127.0.0.1:1"
	cfg.Device.Serial = "cam-offline"
	dir := t.TempDir()
	cfg.Provisioning.ClaimCert = dir + "/missing.pem"
	cfg.Provisioning.ClaimKey = dir + "/missing.key"
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	require.NoError(t, a.Run(ctx))
	require.Positive(t, a.Frames())
	require.NotEmpty(t, a.Recordings())
}

func TestNeedsCredentialFile(t *testing.T) {
	tests := []struct {
		name      string
		kvsWanted bool
		auth      string
		want      bool
	}{
		{"KVS recording with the credential file", true, config.KVSAuthCredentialFile, true},
		{"KVS recording with the IoT certificate", true, config.KVSAuthIoTCertificate, false},
		{"no KVS recording (off, or kvssink missing)", false, config.KVSAuthCredentialFile, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Recording.KVS.Auth = tt.auth
			require.Equal(t, tt.want, needsCredentialFile(cfg, tt.kvsWanted))
		})
	}
}

// freePort returns a TCP port free on 127.0.0.1 now, so that a restarted localcloud can
// listen where the first one did.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type eventLog struct {
	mu  sync.Mutex
	evs []MotionEvent
}

func (l *eventLog) add(_ string, payload []byte) {
	var me MotionEvent
	if json.Unmarshal(payload, &me) == nil {
		l.mu.Lock()
		l.evs = append(l.evs, me)
		l.mu.Unlock()
	}
}

// distinct returns the events received, each once (delivery is at least once), in the
// order of their first arrival.
func (l *eventLog) distinct() []MotionEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []MotionEvent
	seen := map[string]bool{}
	for _, e := range l.evs {
		k := e.Event + e.Start.String()
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// TestMotionEventsSurviveOutageAndRestart: localcloud goes down while motion events fire,
// the agent is restarted meanwhile, more events fire, localcloud comes back: every event
// arrives, in order, with its original timestamps. (Down 3 s; 30 s with
// EDGECAM_LONG_TESTS=1.)
func TestMotionEventsSurviveOutageAndRestart(t *testing.T) {
	down := 3 * time.Second
	if os.Getenv("EDGECAM_LONG_TESTS") == "1" {
		down = 30 * time.Second
	}
	opts := localcloud.Options{Dir: t.TempDir(), AllowSerials: []string{"cam-agent-1"}, MQTTPort: freePort(t), CredentialsPort: freePort(t), KVSPort: freePort(t)}
	cloud, err := localcloud.Open(opts)
	require.NoError(t, err)
	require.NoError(t, cloud.Start(context.Background()))
	defer func() { cloud.Close() }()
	var got eventLog
	require.NoError(t, cloud.Observe("edgecam/+/events/motion", got.add))
	cfg := cloudConfig(t, cloud)
	cfg.WebRTC.Enabled = false
	cfg.Motion.Enabled = false // the events below are the only ones (the test pattern moves)

	run := func() (*Agent, func()) {
		a, err := New(Options{Config: cfg})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		return a, func() { cancel(); require.NoError(t, <-done) }
	}
	var fired []MotionEvent
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	fire := func(a *Agent) {
		n := len(fired)
		ev := motion.Event{Kind: motion.EventStart, Start: base.Add(time.Duration(n) * time.Minute), PeakScore: float64(n)}
		if n%2 == 1 {
			ev.Kind, ev.Start, ev.End = motion.EventEnd, base.Add(time.Duration(n-1)*time.Minute), base.Add(time.Duration(n)*time.Minute)
		}
		ev.PreRollFrom = ev.Start.Add(-3 * time.Second)
		before := time.Now()
		a.onMotion(ev)
		fired = append(fired, MotionEvent{Event: ev.Kind.String(), Start: ev.Start.UTC(), PreRollFrom: before, Timestamp: time.Now()})
	}

	a1, stop1 := run()
	require.Eventually(t, func() bool { c := a1.deviceConn(); return c != nil && c.Connected() }, 20*time.Second, 10*time.Millisecond)
	fire(a1)
	fire(a1)
	require.Eventually(t, func() bool { return len(got.distinct()) == 2 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, cloud.Close()) // localcloud down
	wentDown := time.Now()
	fire(a1)
	time.Sleep(down / 4) // events fire across the outage, spread in time
	fire(a1)
	stop1() // the agent restarts while localcloud is down
	a2, stop2 := run()
	defer stop2()
	fire(a2)
	time.Sleep(down / 4)
	fire(a2)
	require.Len(t, got.distinct(), 2, "nothing arrives while localcloud is down")
	time.Sleep(time.Until(wentDown.Add(down))) // the outage lasts `down`

	cloud, err = localcloud.Open(opts) // localcloud back
	require.NoError(t, err)
	require.NoError(t, cloud.Start(context.Background()))
	require.NoError(t, cloud.Observe("edgecam/+/events/motion", got.add))
	back := time.Now()
	require.Eventually(t, func() bool { return len(got.distinct()) == len(fired) }, 60*time.Second, 20*time.Millisecond,
		"received %d of %d events", len(got.distinct()), len(fired))
	t.Logf("%d events delivered %s after localcloud came back (down %s, agent restarted)", len(fired), time.Since(back).Round(time.Millisecond), down)
	recv := got.distinct()
	for i, want := range fired {
		require.Equal(t, want.Event, recv[i].Event, "event %d in order", i)
		require.True(t, want.Start.Equal(recv[i].Start), "event %d: start %s, got %s", i, want.Start, recv[i].Start)
		require.Equal(t, "cam-agent-1", recv[i].ThingName)
		require.False(t, recv[i].Timestamp.Before(want.PreRollFrom.Truncate(time.Millisecond)) || recv[i].Timestamp.After(want.Timestamp),
			"event %d keeps the time it fired (%s), not the time it was sent: %s", i, want.Timestamp, recv[i].Timestamp)
	}
	require.Eventually(t, func() bool { return a2.EventsWaiting() == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestLiveViewWithoutKVSWritesNoCredentialFile: with KVS recording off, live view serves
// viewers without waiting for kvssink's credential file, which is not written at all (here
// it could not be: its directory does not exist).
func TestLiveViewWithoutKVSWritesNoCredentialFile(t *testing.T) {
	cloud, a := liveAgent(t, func(c *config.Config) {
		c.Motion.Enabled = false
		c.Credentials.KVSSinkFile = filepath.Join(t.TempDir(), "missing", "kvssink-credentials")
	})
	v, err := dialViewer(t, cloud, "no-kvs")
	require.NoError(t, err)
	firstKeyframe(t, v, 15*time.Second)
	require.NoFileExists(t, a.cfg.KVSSinkCredentialFile())
}

// TestLiveViewAfterLocalcloudRestart: localcloud restarts and forgets the credentials it
// issued; the signaling service refuses the agent's cached ones (403
// UnrecognizedClientException). The agent drops them, fetches new ones and serves viewers
// again within seconds, not at the end of the credentials' hour.
func TestLiveViewAfterLocalcloudRestart(t *testing.T) {
	opts := localcloud.Options{AllowSerials: []string{liveThing}, MQTTPort: freePort(t), CredentialsPort: freePort(t), KVSPort: freePort(t)}
	cloud, _ := liveAgentWith(t, opts, func(c *config.Config) { c.Motion.Enabled = false })
	opts.Dir = filepath.Dir(cloud.Paths().CA)
	require.NoError(t, cloud.Close())
	// localcloud keeps what it issued across a restart (as AWS does); losing that file is
	// what makes the service refuse credentials that have not expired.
	require.NoError(t, os.Remove(cloud.Paths().IssuedCredentials))
	again, err := localcloud.Open(opts)
	require.NoError(t, err)
	require.NoError(t, again.Start(context.Background()))
	t.Cleanup(func() { again.Close() })
	restarted := time.Now()
	waitMaster(t, again, 20*time.Second)
	t.Logf("master again %s after the restart", time.Since(restarted).Round(time.Millisecond))
	v, err := dialViewer(t, again, "after-restart")
	require.NoError(t, err)
	firstKeyframe(t, v, 15*time.Second)
}
