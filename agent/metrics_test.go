package agent

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// scrape fetches /metrics over HTTP and parses it as Prometheus does.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "the exposition parses")
	return fams
}

// value returns the value of the family's series whose labels include the given pairs.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	fam, ok := fams[name]
	require.True(t, ok, "family %s is exposed", name)
	for _, m := range fam.GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Untyped != nil:
			return m.GetUntyped().GetValue()
		}
	}
	t.Fatalf("no series of %s with %v", name, labels)
	return 0
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

type spool struct{ st SpoolStats }

func (s spool) SpoolStats() SpoolStats { return s.st }

// TestMetricsExposition: the registry lints clean (promtool's rules), the HTTP exposition
// parses, the families are there (process and Go runtime included) and the counters move
// while the agent records; /healthz, /readyz, pprof only when asked, and the spool gauges
// follow what a spool reports.
func TestMetricsExposition(t *testing.T) {
	for _, pprofOn := range []bool{false, true} {
		name := "pprof off"
		if pprofOn {
			name = "pprof on"
		}
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Metrics.Listen, cfg.Metrics.PProf = "127.0.0.1:0", pprofOn
			cfg.Motion.Enabled = false // its families are there all the same
			require.Empty(t, cfg.Validate())
			a, err := New(Options{Config: cfg, Version: "1.2.3"})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() { cancel(); require.NoError(t, <-done) }()
			require.Eventually(t, func() bool { return a.MetricsAddr() != "" && a.Frames() > 0 }, 15*time.Second, 20*time.Millisecond)
			base := "http://" + a.MetricsAddr()

			problems, err := testutil.GatherAndLint(a.Metrics().Registry)
			require.NoError(t, err)
			require.Empty(t, problems, "promlint")

			first := scrape(t, a.MetricsAddr())
			for _, fam := range []string{
				"process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines", "go_memstats_alloc_bytes",
				"edgecam_build_info", "edgecam_video_frames_total", "edgecam_video_bytes_total", "edgecam_video_pipeline_state",
				"edgecam_video_pipeline_restarts_total", "edgecam_video_out_frames_total", "edgecam_video_out_bytes_total",
				"edgecam_recording_bytes_total", "edgecam_recording_segments_total", "edgecam_spool_bytes",
				"edgecam_spool_fragments", "edgecam_motion_events_total", "edgecam_motion_active", "edgecam_viewers",
				"edgecam_signaling_reconnects_total", "edgecam_provisioning_state", "edgecam_cloud_connected",
				"edgecam_hub_dropped_frames_total", "edgecam_encoder_bitrate_kbps", "edgecam_config_reloads_total",
			} {
				require.Contains(t, first, fam)
			}
			require.Equal(t, 1.0, value(t, first, "edgecam_build_info", "version", "1.2.3"))
			require.Equal(t, 1.0, value(t, first, "edgecam_provisioning_state", "state", "off"))
			require.Equal(t, 0.0, value(t, first, "edgecam_spool_bytes"), "no spool yet")

			// A segment is finalised every 2 s: wait for bytes on disk, then for more.
			require.Eventually(t, func() bool {
				return value(t, scrape(t, a.MetricsAddr()), "edgecam_recording_bytes_total", "target", "local") > 0
			}, 10*time.Second, 100*time.Millisecond)
			second := scrape(t, a.MetricsAddr())
			require.Eventually(t, func() bool {
				third := scrape(t, a.MetricsAddr())
				return value(t, third, "edgecam_recording_bytes_total", "target", "local") > value(t, second, "edgecam_recording_bytes_total", "target", "local") &&
					value(t, third, "edgecam_video_frames_total") > value(t, second, "edgecam_video_frames_total") &&
					value(t, third, "edgecam_video_bytes_total") > value(t, second, "edgecam_video_bytes_total") &&
					value(t, third, "edgecam_video_out_frames_total", "consumer", "local") > value(t, second, "edgecam_video_out_frames_total", "consumer", "local")
			}, 10*time.Second, 100*time.Millisecond, "frames, bytes in, frames out and recorded bytes keep growing")
			now := scrape(t, a.MetricsAddr())
			require.Equal(t, 1.0, value(t, now, "edgecam_video_pipeline_state", "state", "streaming"))
			require.Equal(t, 0.0, value(t, now, "edgecam_video_pipeline_state", "state", "stalled"))
			// Bytes in: the captured stream (320x180 x264 at 2 Mbit/s or less, a few KB a frame).
			perFrame := value(t, now, "edgecam_video_bytes_total") / value(t, now, "edgecam_video_frames_total")
			require.Greater(t, perFrame, 100.0)

			a.Metrics().SetSpool(spool{st: SpoolStats{Bytes: 4096, Fragments: 2, Oldest: time.Now().Add(-time.Minute)}})
			sp := scrape(t, a.MetricsAddr())
			require.Equal(t, 4096.0, value(t, sp, "edgecam_spool_bytes"))
			require.Equal(t, 2.0, value(t, sp, "edgecam_spool_fragments"))
			require.InDelta(t, 60, value(t, sp, "edgecam_spool_oldest_age_seconds"), 5)

			code, _ := get(t, base+"/healthz")
			require.Equal(t, http.StatusOK, code)
			code, body := get(t, base+"/readyz")
			require.Equal(t, http.StatusOK, code, body)
			code, _ = get(t, base+"/debug/pprof/")
			if pprofOn {
				require.Equal(t, http.StatusOK, code)
				code, body = get(t, base+"/debug/pprof/goroutine?debug=1")
				require.Equal(t, http.StatusOK, code)
				require.Contains(t, body, "goroutine profile")
			} else {
				require.Equal(t, http.StatusNotFound, code, "pprof only when metrics.pprof is true")
			}
		})
	}
}

// TestReadyzBeforeFirstFrame: /readyz says why it is not ready until the first frame, while
// /healthz gives a starting agent its grace.
func TestReadyzBeforeFirstFrame(t *testing.T) {
	cfg := testConfig(t)
	// A live source that delivers nothing: an RTSP address nobody serves.
	cfg.Media.Source.Kind, cfg.Media.Source.URL = config.SourceRTSP, "rtsp://127.0.0.1:1/stream"
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Recording.Mode = config.RecordOff
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool { return a.MetricsAddr() != "" }, 10*time.Second, 20*time.Millisecond)
	base := "http://" + a.MetricsAddr()
	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "waiting for the first video frame")
	code, _ = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code, "starting")
	fams := scrape(t, a.MetricsAddr())
	require.Equal(t, 1.0, value(t, fams, "edgecam_video_pipeline_state", "state", "starting"))
}

// TestCloudMetrics: with localcloud, the provisioning state, the credentials' expiry, the
// viewers gauge (one series, not one per viewer) and signaling reconnects.
func TestCloudMetrics(t *testing.T) {
	cloud, a := liveAgent(t, func(c *config.Config) { c.Metrics.Listen, c.Motion.Enabled = "127.0.0.1:0", false })
	require.Eventually(t, func() bool { return a.MetricsAddr() != "" }, 10*time.Second, 20*time.Millisecond)
	fams := scrape(t, a.MetricsAddr())
	require.Equal(t, 1.0, value(t, fams, "edgecam_provisioning_state", "state", "provisioned"))
	require.Equal(t, 0.0, value(t, fams, "edgecam_provisioning_state", "state", "pending"))
	require.Equal(t, 0.0, value(t, fams, "edgecam_viewers"))
	require.Eventually(t, func() bool {
		f := scrape(t, a.MetricsAddr())
		exp, ok := f["edgecam_credentials_expiry_seconds"]
		return ok && exp.GetMetric()[0].GetGauge().GetValue() > 60
	}, 15*time.Second, 100*time.Millisecond, "seconds until the AWS credentials expire")

	for _, id := range []string{"m1", "m2"} {
		v, err := dialViewer(t, cloud, id)
		require.NoError(t, err)
		firstKeyframe(t, v, 15*time.Second)
	}
	require.Eventually(t, func() bool {
		f := scrape(t, a.MetricsAddr())
		return value(t, f, "edgecam_viewers") == 2 && value(t, f, "edgecam_video_out_bytes_total", "consumer", "viewers") > 0 &&
			value(t, f, "edgecam_video_out_frames_total", "consumer", "viewers") > 0
	}, 10*time.Second, 100*time.Millisecond)
	f := scrape(t, a.MetricsAddr())
	require.Len(t, f["edgecam_viewers"].GetMetric(), 1, "one series")
	for _, m := range f["edgecam_hub_dropped_frames_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			require.False(t, strings.Contains(l.GetValue(), "m1"), "no series per viewer")
		}
	}
	before := value(t, f, "edgecam_signaling_reconnects_total")
	require.NoError(t, cloud.DropSignalingMaster(liveThing))
	require.Eventually(t, func() bool {
		return value(t, scrape(t, a.MetricsAddr()), "edgecam_signaling_reconnects_total") > before
	}, 15*time.Second, 100*time.Millisecond)
}

// BenchmarkMetricsGather: one scrape's worth of collection (every family, process and Go
// collectors included) on a running agent.
func BenchmarkMetricsGather(b *testing.B) {
	cfg := testConfig(b)
	cfg.Motion.Enabled = false
	a, err := New(Options{Config: cfg})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(b, func() bool { return len(a.Recordings()) > 0 }, 15*time.Second, 20*time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Metrics().Registry.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
