package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// serveMetrics serves /metrics (Prometheus text format) and /healthz until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(a.metricsText()))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn("metrics endpoint stopped", zap.Error(err))
		}
	}()
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
}

// health says why the agent is unhealthy: no frame for twice the stall timeout.
func (a *Agent) health() error {
	last := a.source.LastFrame()
	limit := 2 * a.cfg.Media.StallTimeout
	if last.IsZero() {
		if time.Since(a.started) > limit+10*time.Second {
			return fmt.Errorf("no video since the start (%s)", time.Since(a.started).Round(time.Second))
		}
		return nil // starting
	}
	if age := time.Since(last); age > limit {
		return fmt.Errorf("no video frame for %s", age.Round(time.Second))
	}
	return nil
}

// metricsText renders the metrics.
func (a *Agent) metricsText() string {
	var b strings.Builder
	metric := func(name, kind, help string, value float64, labels ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
		if len(labels) > 0 {
			fmt.Fprintf(&b, "%s{%s} %g\n", name, strings.Join(labels, ","), value)
		} else {
			fmt.Fprintf(&b, "%s %g\n", name, value)
		}
	}
	st := a.StatusNow("running")
	metric("edgecam_video_frames_total", "counter", "Access units captured.", float64(st.Video.Frames))
	metric("edgecam_video_pipeline_restarts_total", "counter", "Capture pipeline restarts (errors, end of stream, stalls).", float64(st.Video.Restarts))
	if a.source.Encoding() {
		metric("edgecam_encoder_bitrate_kbps", "gauge", "Encoder target bitrate.", float64(a.source.Bitrate()))
		metric("edgecam_encoder_framerate", "gauge", "Encoded frame rate.", float64(a.source.Framerate()))
	}
	metric("edgecam_viewers", "gauge", "Live-view viewers connected.", float64(st.Viewers))
	metric("edgecam_motion_active", "gauge", "1 while a motion event is under way.", boolf(st.Motion.Active))
	metric("edgecam_motion_events_total", "counter", "Motion events started.", float64(st.Motion.Events))
	metric("edgecam_motion_score", "gauge", "Motion score of the newest analysis frame (motion at 0.5 and above).", st.Motion.Score)
	metric("edgecam_recording_segments_total", "counter", "Local segment files opened.", float64(st.Recording.Segments))
	conn := a.deviceConn() // read once: the session may clear it meanwhile
	metric("edgecam_cloud_connected", "gauge", "1 while the MQTT connection to AWS IoT is up.", boolf(conn != nil && conn.Connected()))
	hub := a.hub.Stats()
	subs := hub.Subscribers
	sort.Slice(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
	fmt.Fprintf(&b, "# HELP edgecam_hub_dropped_frames_total Frames a slow consumer lost (it skipped to the next keyframe).\n# TYPE edgecam_hub_dropped_frames_total counter\n")
	for _, s := range subs {
		fmt.Fprintf(&b, "edgecam_hub_dropped_frames_total{consumer=%q} %d\n", s.Name, s.Dropped)
	}
	a.mu.Lock()
	lv := a.live
	a.mu.Unlock()
	if lv != nil {
		ms := lv.master.Stats()
		metric("edgecam_signaling_dropped_messages_total", "counter", "Malformed or undeliverable signaling messages.", float64(ms.Dropped))
		metric("edgecam_signaling_reconnects_total", "counter", "Signaling reconnections.", float64(ms.Reconnects))
	}
	return b.String()
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MetricsAddr returns the metrics endpoint's address once it listens ("" when off).
func (a *Agent) MetricsAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metricsAddr
}
