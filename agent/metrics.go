package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Metrics is the agent's Prometheus registry: the process and Go runtime collectors, the
// agent's own families (read from its parts at each scrape), and meters that other parts
// feed. It is made with the agent, so parts can register their own collectors on Registry
// before Run.
type Metrics struct {
	// Registry is served on /metrics.
	Registry *prometheus.Registry
	// RecordingBytes counts bytes written by recording target ("local", "kvs"). Local
	// segments are counted by the agent from the files; an uploader adds its own target's.
	RecordingBytes *prometheus.CounterVec
	// Reloads counts configuration reloads by result ("live", "restart", "failed").
	Reloads *prometheus.CounterVec

	spool atomic.Pointer[spoolHolder]

	// Counters accumulated from parts whose own counters live as long as a subscription or
	// a viewer: the deltas since the previous sample are added here.
	framesOut  *prometheus.CounterVec // consumer
	bytesOut   *prometheus.CounterVec // consumer
	hubDropped *prometheus.CounterVec // consumer
	bytesIn    prometheus.Counter

	mu         sync.Mutex
	lastSubs   map[string]media.SubscriptionStats // by subscription name
	lastViewer map[string]uint64                  // bytes sent, by viewer
	lastKVS    int64                              // the KVS uploader's byte count at the last sample
	files      map[string]int64                   // local segment sizes seen, by path
	expiry     time.Time                          // the AWS credentials' expiry, zero before the first
}

// SpoolStats is what a disk spool (the native KVS uploader's) reports.
type SpoolStats struct {
	Bytes     int64 // of the fragments waiting for upload
	Fragments int   // fragments waiting
	// DiskBytes is what the spool's files take on disk (what max_bytes bounds): uploaded
	// records stay until their file is rotated away.
	DiskBytes int64
	// Oldest is when the oldest waiting fragment was recorded (zero when empty).
	Oldest time.Time
}

// SpoolReporter is a spool the metrics read at each scrape.
type SpoolReporter interface {
	SpoolStats() SpoolStats
}

type spoolHolder struct{ r SpoolReporter }

// SetSpool makes the spool gauges report r (nil: back to 0).
func (m *Metrics) SetSpool(r SpoolReporter) {
	if r == nil {
		m.spool.Store(nil)
		return
	}
	m.spool.Store(&spoolHolder{r: r})
}

func newMetrics(a *Agent) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		RecordingBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecam_recording_bytes_total", Help: "Bytes recorded, by target (local: segment files; kvs: persisted by KVS through the native uploader, or handed to kvssink).",
		}, []string{"target"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecam_config_reloads_total", Help: "Configuration reloads (SIGHUP) by result: live (applied while running), restart (restarted inside the process), failed (kept the running configuration).",
		}, []string{"result"}),
		framesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecam_video_out_frames_total", Help: "Access units delivered to consumers, by kind (local, kvs, viewers).",
		}, []string{"consumer"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecam_video_out_bytes_total", Help: "H.264 bytes sent to consumers, by kind (viewers; recorders: edgecam_recording_bytes_total).",
		}, []string{"consumer"}),
		hubDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecam_hub_dropped_frames_total", Help: "Frames a slow consumer lost (it skipped to the next keyframe), by kind.",
		}, []string{"consumer"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgecam_video_bytes_total", Help: "H.264 bytes captured (access units into the hub).",
		}),
		lastSubs:   map[string]media.SubscriptionStats{},
		lastViewer: map[string]uint64{},
		files:      map[string]int64{},
	}
	// "kvs" appears when the uploader feeds it: a 0 while kvssink uploads would mislead.
	m.RecordingBytes.WithLabelValues("local")
	for _, kind := range []string{"local", "kvs", "viewers"} {
		m.framesOut.WithLabelValues(kind)
		m.hubDropped.WithLabelValues(kind)
	}
	m.bytesOut.WithLabelValues("viewers")
	for _, r := range []string{"live", "restart", "failed"} {
		m.Reloads.WithLabelValues(r)
	}
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.RecordingBytes, m.Reloads, m.framesOut, m.bytesOut, m.hubDropped, m.bytesIn,
		agentCollector{a: a, m: m},
	)
	return m
}

// consumerKind maps a hub subscription's name to a label with few values: "viewer <id>"
// is "viewers", "local (motion)" is "local".
func consumerKind(name string) string {
	if strings.HasPrefix(name, "viewer ") {
		return "viewers"
	}
	kind, _, _ := strings.Cut(name, " (")
	return kind
}

// sample adds what the parts counted since the previous sample. It runs at each scrape and
// every few seconds, so that little of a subscription or a viewer that goes away is lost.
func (m *Metrics) sample(a *Agent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Keyed by name: a recorder's subscription made again after a restart starts from 0.
	subs := map[string]media.SubscriptionStats{}
	for _, st := range a.hub.Stats().Subscribers {
		cur := subs[st.Name]
		cur.Name, cur.Delivered, cur.Dropped = st.Name, cur.Delivered+st.Delivered, cur.Dropped+st.Dropped
		subs[st.Name] = cur
	}
	for name, st := range subs {
		kind := consumerKind(name)
		if kind == metricsTap {
			continue
		}
		prev, ok := m.lastSubs[name]
		if !ok || st.Delivered < prev.Delivered || st.Dropped < prev.Dropped {
			prev = media.SubscriptionStats{}
		}
		m.framesOut.WithLabelValues(kind).Add(float64(st.Delivered - prev.Delivered))
		m.hubDropped.WithLabelValues(kind).Add(float64(st.Dropped - prev.Dropped))
		m.lastSubs[name] = st
	}
	for name := range m.lastSubs {
		if _, ok := subs[name]; !ok {
			delete(m.lastSubs, name)
		}
	}
	if a.webrtc != nil {
		viewers := map[string]bool{}
		for _, v := range a.webrtc.Stats() {
			viewers[v.Viewer] = true
			if prev := m.lastViewer[v.Viewer]; v.BytesSent >= prev {
				m.bytesOut.WithLabelValues("viewers").Add(float64(v.BytesSent - prev))
			}
			m.lastViewer[v.Viewer] = v.BytesSent
		}
		for v := range m.lastViewer {
			if !viewers[v] {
				delete(m.lastViewer, v)
			}
		}
	}
	if a.recorder != nil {
		m.sampleFiles(a.recorder.Files())
	}
	if _, st := a.kvsStatus(); st != nil {
		m.sampleKVS(st.PersistedBytes)
	}
}

// sampleKVS adds what the KVS uploader recorded since the last sample; a count that went
// down belongs to a new uploader or recorder, which counts from 0.
func (m *Metrics) sampleKVS(total int64) {
	if total < m.lastKVS {
		m.lastKVS = 0
	}
	m.RecordingBytes.WithLabelValues("kvs").Add(float64(total - m.lastKVS))
	m.lastKVS = total
}

// sampleFiles counts the bytes of local segment files: each file's largest size seen. The
// recorder names its newest files; a file that drops off that list keeps its last size.
func (m *Metrics) sampleFiles(files []string) {
	current := make(map[string]bool, len(files))
	var added int64
	// Only the newest two can still grow; the others were measured when they were new.
	for i, f := range files {
		current[f] = true
		old, known := m.files[f]
		if known && i < len(files)-2 {
			continue
		}
		if size, err := fileSize(f); err == nil && size > old {
			added += size - old
			m.files[f] = size
		} else if !known {
			m.files[f] = 0
		}
	}
	for f := range m.files {
		if !current[f] {
			delete(m.files, f) // counted already
		}
	}
	m.RecordingBytes.WithLabelValues("local").Add(float64(added))
}

// runSampler samples every few seconds and keeps the credentials' expiry known, until ctx
// ends.
func (m *Metrics) runSampler(ctx context.Context, a *Agent) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	lastCreds := time.Time{}
	for {
		m.sample(a)
		if p := a.Credentials(); p != nil && time.Since(lastCreds) > 10*time.Second {
			lastCreds = time.Now()
			// The cache answers from memory while the credentials are fresh.
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if c, err := p.Retrieve(rctx); err == nil && c.CanExpire {
				m.mu.Lock()
				m.expiry = c.Expires
				m.mu.Unlock()
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// metricsTap is the hub subscription that counts captured bytes.
const metricsTap = "metrics"

// runTap counts the bytes of every access unit the hub receives, until the hub closes.
func (m *Metrics) runTap(ctx context.Context, sub *media.Subscription) {
	defer sub.Close()
	for {
		au, err := sub.Next(ctx)
		if err != nil {
			return
		}
		m.bytesIn.Add(float64(len(au.Data)))
	}
}

// agentCollector reads the agent's state at each scrape.
type agentCollector struct {
	a *Agent
	m *Metrics
}

var (
	descFrames      = prometheus.NewDesc("edgecam_video_frames_total", "Access units captured.", nil, nil)
	descRestarts    = prometheus.NewDesc("edgecam_video_pipeline_restarts_total", "Capture pipeline restarts (errors, end of stream, stalls).", nil, nil)
	descPipeline    = prometheus.NewDesc("edgecam_video_pipeline_state", "1 for the capture pipeline's state: starting (no frame yet), streaming, stalled.", []string{"state"}, nil)
	descFrameAge    = prometheus.NewDesc("edgecam_video_last_frame_age_seconds", "Seconds since the newest access unit (since the start before the first).", nil, nil)
	descBitrate     = prometheus.NewDesc("edgecam_encoder_bitrate_kbps", "Encoder target bitrate.", nil, nil)
	descFramerate   = prometheus.NewDesc("edgecam_encoder_framerate", "Encoded frame rate.", nil, nil)
	descViewers     = prometheus.NewDesc("edgecam_viewers", "Live-view viewers connected.", nil, nil)
	descSubscribers = prometheus.NewDesc("edgecam_hub_subscribers", "Consumers attached to the frame hub.", nil, nil)
	descMotion      = prometheus.NewDesc("edgecam_motion_active", "1 while a motion event is under way.", nil, nil)
	descMotionEv    = prometheus.NewDesc("edgecam_motion_events_total", "Motion events started.", nil, nil)
	descMotionScore = prometheus.NewDesc("edgecam_motion_score", "Motion score of the newest analysis frame (motion at 0.5 and above).", nil, nil)
	descSegments    = prometheus.NewDesc("edgecam_recording_segments_total", "Local segment files opened.", nil, nil)
	descSpoolBytes  = prometheus.NewDesc("edgecam_spool_bytes", "Bytes in the upload spool, waiting for Kinesis Video Streams (0 without a spool).", nil, nil)
	descSpoolDisk   = prometheus.NewDesc("edgecam_spool_disk_bytes", "Bytes the upload spool's files take on disk, uploaded records included until their file is rotated away (recording.kvs.spool.max_bytes bounds it).", nil, nil)
	descSpoolFrags  = prometheus.NewDesc("edgecam_spool_fragments", "Fragments in the upload spool.", nil, nil)
	descSpoolAge    = prometheus.NewDesc("edgecam_spool_oldest_age_seconds", "Age of the oldest fragment in the upload spool (0 when empty).", nil, nil)
	descCloud       = prometheus.NewDesc("edgecam_cloud_connected", "1 while the MQTT connection to AWS IoT is up.", nil, nil)
	descProvision   = prometheus.NewDesc("edgecam_provisioning_state", "1 for the device identity's state: off (no iot.endpoint), pending (provisioning or waiting for it), provisioned.", []string{"state"}, nil)
	descExpiry      = prometheus.NewDesc("edgecam_credentials_expiry_seconds", "Seconds until the temporary AWS credentials expire (negative: expired; absent before the first).", nil, nil)
	descSigReconn   = prometheus.NewDesc("edgecam_signaling_reconnects_total", "Signaling reconnections.", nil, nil)
	descSigDropped  = prometheus.NewDesc("edgecam_signaling_dropped_messages_total", "Malformed or undeliverable signaling messages.", nil, nil)
	descSigUp       = prometheus.NewDesc("edgecam_signaling_connected", "1 while the signaling channel's master connection is up.", nil, nil)
	descBuild       = prometheus.NewDesc("edgecam_build_info", "The running version.", []string{"version"}, nil)
	descAnalysis    = prometheus.NewDesc("edgecam_motion_analysis_state", "Where motion analysis stands (1 for the current state): ok, starting, or degraded (a separate analysis source delivers nothing and motion recording records everything).", []string{"state"}, nil)
)

// Describe sends nothing: the collector is unchecked, as some families exist only in some
// set-ups (the encoder's only when the agent encodes).
func (agentCollector) Describe(chan<- *prometheus.Desc) {}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	a, m := c.a, c.m
	m.sample(a)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	st := a.StatusNow("running")
	gauge(descBuild, 1, a.opts.Version)
	counter(descFrames, float64(st.Video.Frames))
	counter(descRestarts, float64(st.Video.Restarts))
	state := a.pipelineState()
	for _, s := range []string{pipelineStarting, pipelineStreaming, pipelineStalled} {
		gauge(descPipeline, boolf(s == state), s)
	}
	gauge(descFrameAge, a.frameAge().Seconds())
	if a.source.Encoding() {
		gauge(descBitrate, float64(a.source.Bitrate()))
		gauge(descFramerate, float64(a.source.Framerate()))
	}
	gauge(descViewers, float64(st.Viewers))
	gauge(descSubscribers, float64(st.Subscribers))
	gauge(descMotion, boolf(st.Motion.Active))
	counter(descMotionEv, float64(st.Motion.Events))
	gauge(descMotionScore, st.Motion.Score)
	if an := st.Motion.Analysis; an != nil {
		for _, s := range []string{"ok", "starting", "degraded"} {
			gauge(descAnalysis, boolf(s == an.State), s)
		}
	}
	counter(descSegments, float64(st.Recording.Segments))

	var sp SpoolStats
	if h := m.spool.Load(); h != nil {
		sp = h.r.SpoolStats()
	}
	gauge(descSpoolBytes, float64(sp.Bytes))
	gauge(descSpoolDisk, float64(sp.DiskBytes))
	gauge(descSpoolFrags, float64(sp.Fragments))
	age := 0.0
	if !sp.Oldest.IsZero() {
		age = time.Since(sp.Oldest).Seconds()
	}
	gauge(descSpoolAge, age)

	conn := a.deviceConn() // read once: the session may clear it meanwhile
	gauge(descCloud, boolf(conn != nil && conn.Connected()))
	prov := provisioningState(a)
	for _, s := range []string{"off", "pending", "provisioned"} {
		gauge(descProvision, boolf(s == prov), s)
	}
	m.mu.Lock()
	expiry := m.expiry
	m.mu.Unlock()
	if !expiry.IsZero() {
		gauge(descExpiry, time.Until(expiry).Seconds())
	}

	a.mu.Lock()
	lv := a.live
	a.mu.Unlock()
	var reconnects, dropped uint64
	up := false
	if lv != nil {
		ms := lv.master.Stats()
		reconnects, dropped = ms.Reconnects, ms.Dropped
		up = !ms.ConnectedSince.IsZero()
	}
	counter(descSigReconn, float64(reconnects))
	counter(descSigDropped, float64(dropped))
	gauge(descSigUp, boolf(up))
}

func provisioningState(a *Agent) string {
	switch {
	case a.cfg.IoT.Endpoint == "":
		return "off"
	case a.Thing() == "":
		return "pending"
	default:
		return "provisioned"
	}
}

// Pipeline states, as /metrics and the systemd status report them.
const (
	pipelineStarting  = "starting"
	pipelineStreaming = "streaming"
	pipelineStalled   = "stalled"
)

// frameAge is the time since the newest access unit, or since the start before the first.
// Only for what Run starts (a.started is Run's); others say where they start counting.
func (a *Agent) frameAge() time.Duration { return a.frameAgeFrom(a.started) }

// frameAgeFrom is the time since the newest access unit, or since origin before the first.
func (a *Agent) frameAgeFrom(origin time.Time) time.Duration {
	last := a.source.LastFrame()
	if last.IsZero() {
		if origin.IsZero() {
			return 0
		}
		return time.Since(origin)
	}
	return time.Since(last)
}

// pipelineState says whether video flows: streaming while the newest frame is younger than
// media.stall_timeout.
func (a *Agent) pipelineState() string {
	if a.source.LastFrame().IsZero() {
		return pipelineStarting
	}
	if a.frameAge() > a.cfg.Media.StallTimeout {
		return pipelineStalled
	}
	return pipelineStreaming
}

// startMetrics starts counting captured bytes (before the source starts, so that none is
// missed), the sampler and, with metrics.listen, the HTTP endpoint. The returned channel
// closes when all of them have stopped, after ctx ends and the hub closes.
func (a *Agent) startMetrics(ctx context.Context) chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	tap := a.hub.Subscribe(media.SubscribeOptions{Name: metricsTap, QueueFrames: 4 * a.cfg.Media.Hub.QueueFrames})
	wg.Add(2)
	go func() { defer wg.Done(); a.metrics.runTap(ctx, tap) }()
	go func() { defer wg.Done(); a.metrics.runSampler(ctx, a) }()
	if l := a.cfg.Metrics.Listen; l != "" {
		ln, err := net.Listen("tcp", l)
		if err != nil {
			a.log.Error("metrics endpoint off: cannot listen; set metrics.listen to a free loopback port, or empty to turn it off", zap.String("listen", l), zap.Error(err))
		} else {
			a.mu.Lock()
			a.metricsAddr = ln.Addr().String()
			a.mu.Unlock()
			a.log.Info("metrics", zap.String("url", "http://"+ln.Addr().String()+"/metrics"))
			wg.Add(1)
			go func() { defer wg.Done(); a.serveMetrics(ctx, ln) }()
		}
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

// DefaultMemProfileRate is Go's default runtime.MemProfileRate: a heap profile sample every
// 512 KB allocated on average.
const DefaultMemProfileRate = 512 * 1024

// serveMetrics serves /metrics (Prometheus text format), /healthz, /readyz and, with
// metrics.pprof, /debug/pprof/, until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(a.log.Named("metrics")), ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if a.cfg.Metrics.PProf {
		// edgecam turns the heap profile's sampling off unless it is served (cmd/edgecam):
		// it samples from now on.
		if runtime.MemProfileRate == 0 {
			runtime.MemProfileRate = DefaultMemProfileRate
		}
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
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

// ready says why the agent is not ready: ready once the first frame came, while video flows.
func (a *Agent) ready() error {
	switch a.pipelineState() {
	case pipelineStarting:
		return errors.New("waiting for the first video frame")
	case pipelineStalled:
		return fmt.Errorf("no video frame for %s", a.frameAge().Round(time.Second))
	}
	return nil
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Metrics returns the agent's metrics registry and meters.
func (a *Agent) Metrics() *Metrics { return a.metrics }

// MetricsAddr returns the metrics endpoint's address once it listens ("" when off).
func (a *Agent) MetricsAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metricsAddr
}

func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
