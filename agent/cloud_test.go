package agent

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/localcloud"
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

	// kvssink's credential file holds credentials the provider issued.
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(cfg.KVSSinkCredentialFile())
		if err != nil {
			return false
		}
		fields := strings.Fields(string(data))
		_, issued := cloud.Credentials(fields[1])
		return len(fields) == 5 && issued
	}, 10*time.Second, 50*time.Millisecond)
	require.NotNil(t, a.Credentials())

	cancel()
	require.NoError(t, <-done)
	states := log.states()
	require.Equal(t, "running", states[0])
	require.Equal(t, "stopped", states[len(states)-1], "a clean stop says so")
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
