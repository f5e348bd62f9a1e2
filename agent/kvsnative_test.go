package agent

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media/kvsupload"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// The native uploader in the agent: the capture pipeline's fragments reach localcloud's KVS
// stream through the spool, the status document names the uploader, and the metrics show the
// spool.
func TestAgentNativeKVSUploader(t *testing.T) {
	cloud := startCloud(t, "cam-agent-1")
	cfg := cloudConfig(t, cloud)
	cfg.Recording.Mode = config.RecordContinuous
	cfg.Recording.Local.Enabled = false
	cfg.Recording.KVS.Enabled = true
	cfg.Recording.KVS.Uploader = config.KVSUploaderNative
	cfg.Recording.KVS.StreamName = "cam-native"
	cfg.Motion.Enabled = false
	require.Empty(t, cfg.Validate())
	var log statusLog
	require.NoError(t, cloud.Observe("edgecam/+/status", log.add))

	a, err := New(Options{Config: cfg, Version: "test", RequireCloud: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	require.Eventually(t, func() bool {
		st, err := cloud.KVSStreamStats("cam-native")
		return err == nil && st.FragmentsPersisted >= 3
	}, 60*time.Second, 100*time.Millisecond, "fragments persisted in localcloud")
	st, err := cloud.KVSStreamStats("cam-native")
	require.NoError(t, err)
	require.Zero(t, st.Duplicates)
	require.Empty(t, st.Errors)

	require.Eventually(t, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, m := range log.msgs {
			if m.Recording.KVSUploader == "native" && m.Recording.KVS != nil && m.Recording.KVS.Persisted > 0 && m.Recording.KVS.Stream == "cam-native" {
				return true
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond, "the status document names the native uploader and its progress")

	resp, err := http.Get("http://" + a.MetricsAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, m := range []string{"edgecam_spool_bytes", "edgecam_kvs_acks_total{type=\"PERSISTED\"}", "edgecam_kvs_spool_dropped_fragments_total", "edgecam_kvs_upload_lag_seconds"} {
		require.Contains(t, string(body), m)
	}
}

func TestPickKVSUploader(t *testing.T) {
	tests := []struct {
		uploader string
		want     string
	}{
		{config.KVSUploaderNative, "native"},
		{config.KVSUploaderAuto, "native"}, // kvssink is not installed in this test's plugin path
	}
	for _, tc := range tests {
		t.Run(tc.uploader, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Recording.KVS.Uploader = tc.uploader
			cfg.Recording.KVS.PluginDir = ""
			t.Setenv("GST_PLUGIN_PATH", t.TempDir())
			a := &Agent{cfg: cfg}
			a.metrics = newMetrics(a)
			found, err := a.pickKVSUploader(cfg, zaptest.NewLogger(t))
			if err != nil || found {
				t.Skipf("kvssink is installed on this machine (%v): auto picks it", err)
			}
			require.Equal(t, tc.want, a.kvsUploader)
			require.NotNil(t, a.native)
			require.NoError(t, a.native.spool.Close())
		})
	}
}

var _ = kvsupload.ErrFatal

// In motion mode only the motion recordings (with their pre-roll) reach the spool and KVS.
func TestAgentNativeKVSMotionGated(t *testing.T) {
	cloud := startCloud(t, "cam-agent-1")
	cfg := cloudConfig(t, cloud)
	cfg.Media.Source = config.Source{Kind: config.SourceCustom, Format: config.FormatRaw, Width: 320, Height: 180, Framerate: 30,
		Pipeline: "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=180,framerate=30/1"}
	cfg.Recording.Mode = config.RecordMotion
	cfg.Recording.Local.Enabled = false
	cfg.Recording.KVS.Enabled = true
	cfg.Recording.KVS.Uploader = config.KVSUploaderNative
	cfg.Recording.KVS.StreamName = "cam-motion"
	cfg.Motion.PreRoll = 2 * time.Second
	cfg.Motion.IdleBitrateKbps, cfg.Motion.IdleFramerate = 0, 0
	require.Empty(t, cfg.Validate())
	cfg.Media.Analysis.Enabled = false // no detector: the test says when motion happens
	a, err := New(Options{Config: cfg, Version: "test", RequireCloud: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	require.Eventually(t, func() bool { return a.Frames() > 300 }, 40*time.Second, 20*time.Millisecond, "10 s of video, no motion")
	require.Zero(t, a.native.spool.Stats().Appended, "nothing reaches the spool without motion")

	start := time.Now()
	motionStart(a, 2*time.Second)
	target := a.Frames() + 90 // 3 s of motion
	require.Eventually(t, func() bool { return a.Frames() > target }, 20*time.Second, 20*time.Millisecond)
	motionEnd(a)
	end := time.Now()

	require.Eventually(t, func() bool {
		st, err := cloud.KVSStreamStats("cam-motion")
		return err == nil && st.FragmentsPersisted >= 4 && a.native.spool.Stats().Fragments == 0
	}, 60*time.Second, 100*time.Millisecond, "the motion recording (pre-roll included) persisted")
	sp := a.native.spool.Stats()
	t.Logf("events: %d, spool %+v, recorder %+v", a.motion.events, sp, a.native.rec.Stats())
	// 1 s GOPs: about 2 s of pre-roll and 3 s of motion (and the gate's post-roll), not the
	// 10 quiet seconds before it: a continuous recording would hold 13 or more.
	require.GreaterOrEqual(t, sp.Appended, uint64(4))
	require.LessOrEqual(t, sp.Appended, uint64(10))
	rs := a.native.rec.Stats()
	first := time.UnixMilli(rs.LastSpooled)
	require.True(t, first.After(start.Add(-4*time.Second)) && first.Before(end.Add(2*time.Second)), "last fragment %s within the event", first)
}

// The spool gauges: edgecam_spool_bytes counts what still waits for KVS, so it falls to 0
// once everything is persisted, while the files keep their bytes until rotated away.
func TestSpoolStatsWaitingVersusDisk(t *testing.T) {
	spool, err := kvsupload.OpenSpool(kvsupload.SpoolOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	defer spool.Close()
	n := &nativeKVS{spool: spool}
	fr := &kvsupload.Fragment{Timecode: 1_700_000_000_000, Wall: time.Now(), Frames: 30, Duration: 2 * time.Second,
		Header: []byte("header"), Cluster: bytes.Repeat([]byte{1}, 4096)}
	require.NoError(t, spool.Append(fr))
	st := n.SpoolStats()
	require.Equal(t, 1, st.Fragments)
	require.EqualValues(t, 4096, st.Bytes, "the fragment waits")
	require.GreaterOrEqual(t, st.DiskBytes, int64(4096))

	require.NoError(t, spool.Done(fr.Seq))
	st = n.SpoolStats()
	require.Zero(t, st.Fragments)
	require.Zero(t, st.Bytes, "nothing waits once KVS persisted it")
	require.Positive(t, st.DiskBytes, "the record stays in its file until rotation")
}
