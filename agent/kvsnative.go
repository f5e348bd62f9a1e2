package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/backoff"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/kvsupload"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// nativeKVS is edgecam's own KVS uploader (recording.kvs.uploader native, or auto without
// kvssink): a recorder writes every fragment to the spool on disk from the first frame, with
// or without a network; the uploader drains the spool to PutMedia once the device has AWS
// credentials.
type nativeKVS struct {
	spool *kvsupload.Spool
	rec   *kvsupload.Recorder
	why   string // why native was chosen

	mu      sync.Mutex
	up      *kvsupload.Uploader
	stream  string
	stopped string // why the uploader stopped for good (until its next attempt)
}

// KVSStatus is the KVS uploader's part of the status document: the native uploader fills
// the connection and spool fields, kvssink its sessions, frames and errors.
type KVSStatus struct {
	Stream           string  `json:"stream,omitempty"`
	Connected        bool    `json:"connected"`
	SpoolBytes       int64   `json:"spoolBytes"`
	SpoolFragments   int     `json:"spoolFragments"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
	UploadLagSeconds float64 `json:"uploadLagSeconds"`
	Persisted        uint64  `json:"persisted"`
	DroppedFragments uint64  `json:"droppedFragments"`
	DroppedBytes     int64   `json:"droppedBytes"`
	Skipped          uint64  `json:"skipped"`
	LastError        string  `json:"lastError,omitempty"`
	// PersistedBytes: native, cluster bytes KVS persisted; kvssink, bytes handed to it.
	PersistedBytes int64 `json:"persistedBytes"`
	// kvssink only: pipelines started (one per recording, restart or motion event), access
	// units handed to it, ERROR acknowledgements and stream errors.
	Sessions int    `json:"sessions,omitempty"`
	Frames   uint64 `json:"frames,omitempty"`
	Errors   int    `json:"errors,omitempty"`
}

// kvssinkRun is a started kvssink recorder and its stream.
type kvssinkRun struct {
	rec    *media.KVSSinkRecorder
	stream string
}

func (k *kvssinkRun) status() *KVSStatus {
	st := k.rec.Stats()
	return &KVSStatus{Stream: k.stream, Persisted: uint64(st.Persisted), PersistedBytes: st.Bytes,
		Sessions: st.Sessions, Frames: st.Frames, Errors: st.Errors}
}

// pickKVSUploader resolves recording.kvs.uploader: it reports whether kvssink records, and
// sets up the native uploader (a.native) when it does instead. The choice is logged and
// shown in the status document.
func (a *Agent) pickKVSUploader(cfg config.Config, log *zap.Logger) (bool, error) {
	switch cfg.Recording.KVS.Uploader {
	case config.KVSUploaderNative:
		return false, a.newNativeKVS(cfg, log, "recording.kvs.uploader is native")
	case config.KVSUploaderKVSSink:
		found, err := findKVSSink(cfg, log)
		if found {
			a.kvsUploader = config.KVSUploaderKVSSink
			log.Info("KVS uploader: kvssink (recording.kvs.uploader kvssink)")
		}
		return found, err
	}
	found, err := findKVSSink(cfg, log)
	if err != nil {
		return false, err
	}
	if found {
		a.kvsUploader = config.KVSUploaderKVSSink
		log.Info("KVS uploader: kvssink (recording.kvs.uploader auto, and kvssink is installed)")
		return true, nil
	}
	return false, a.newNativeKVS(cfg, log, "recording.kvs.uploader auto, and kvssink is not installed")
}

func (a *Agent) newNativeKVS(cfg config.Config, log *zap.Logger, why string) error {
	sp := cfg.Recording.KVS.Spool
	spool, err := kvsupload.OpenSpool(kvsupload.SpoolOptions{
		Dir: cfg.KVSSpoolDir(), MaxBytes: int64(sp.MaxBytes), MaxAge: sp.MaxAge, Log: log.Named("spool"),
	})
	if err != nil {
		return fmt.Errorf("recording.kvs.spool.dir: %w", err)
	}
	rec, err := kvsupload.NewRecorder(kvsupload.RecorderOptions{Spool: spool, Name: "kvs", Log: log})
	if err != nil {
		spool.Close()
		return err
	}
	a.native = &nativeKVS{spool: spool, rec: rec, why: why}
	a.kvsUploader = config.KVSUploaderNative
	st := spool.Stats()
	log.Info("KVS uploader: native ("+why+")", zap.String("spool", cfg.KVSSpoolDir()),
		zap.Int("waiting_fragments", st.Fragments), zap.Int64("waiting_bytes", st.Bytes))
	a.metrics.SetSpool(a.native)
	if err := a.metrics.Registry.Register(nativeCollector{a.native}); err != nil {
		log.Warn("native KVS metrics not registered", zap.Error(err))
	}
	return nil
}

// subscribeNativeKVS subscribes the native recorder before the source starts (continuous
// recording), or makes it a gated recorder (motion mode: only motion fragments reach the
// spool). It returns nil when there is nothing to subscribe.
func (a *Agent) subscribeNativeKVS(motionMode bool) *media.Subscription {
	if a.native == nil {
		return nil
	}
	if motionMode {
		a.mu.Lock()
		a.gated = append(a.gated, a.native.rec)
		a.mu.Unlock()
		return nil
	}
	return a.recorderSub(a.native.rec.Name(), time.Time{})
}

// runNativeKVS starts the native recorder on sub (when set) and the uploader, which waits for
// the device's credentials and runs until ctx ends. The returned channel closes once the
// uploader stopped and the spool is closed.
func (a *Agent) runNativeKVS(ctx context.Context, sub *media.Subscription) <-chan struct{} {
	done := make(chan struct{})
	n := a.native
	if n == nil {
		close(done)
		return done
	}
	if sub != nil {
		a.startRecorder(n.rec, sub)
	}
	go func() {
		defer close(done)
		a.runNativeUploader(ctx, n)
		a.recorders.Wait() // the last fragment is spooled before the spool closes
		if err := n.spool.Close(); err != nil {
			a.log.Warn("KVS spool close", zap.Error(err))
		}
	}()
	return done
}

func (a *Agent) runNativeUploader(ctx context.Context, n *nativeKVS) {
	log := a.log.Named("kvs")
	// The uploader needs the thing name (the default stream) and AWS credentials.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for a.Credentials() == nil || a.Thing() == "" {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	cfg := a.cfg
	k := cfg.Recording.KVS
	stream := k.StreamName
	if stream == "" {
		stream = a.Thing()
	}
	httpClient, err := nativeHTTPClient(cfg)
	if err != nil {
		log.Error("native KVS uploader not started", zap.Error(err))
		return
	}
	up, err := kvsupload.NewUploader(kvsupload.UploaderOptions{
		Spool: n.spool, StreamName: stream, Region: cfg.AWS.Region, Credentials: a.Credentials(),
		ControlPlaneURL: k.ControlPlaneURI, CreateStream: k.CreateStream, DataRetentionHours: k.RetentionHours,
		DeviceName: a.Thing(), MaxUploadKbps: k.Spool.MaxUploadKbps, Deduplicate: true,
		FinishTimeout: 5 * time.Second, HTTPClient: httpClient, Log: log,
	})
	if err != nil {
		log.Error("native KVS uploader not started", zap.Error(err))
		return
	}
	n.mu.Lock()
	n.up, n.stream = up, stream
	n.mu.Unlock()
	log.Info("recording to Kinesis Video Streams (native uploader)", zap.String("stream", stream), zap.String("region", cfg.AWS.Region),
		zap.String("mode", cfg.Recording.Mode), zap.Int("max_upload_kbps", k.Spool.MaxUploadKbps))
	for attempt := 1; ; attempt++ {
		err := up.Run(ctx)
		if ctx.Err() != nil || err == nil {
			return
		}
		// A fatal refusal (stream deleted, access denied): fragments keep going to the spool
		// (bounded) while an operator fixes it; try again now and then.
		wait := backoff.Delay(time.Minute, 15*time.Minute, attempt)
		n.mu.Lock()
		n.stopped = err.Error()
		n.mu.Unlock()
		log.Error("native KVS uploader stopped; fragments stay in the spool; trying again later", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n.mu.Lock()
		n.stopped = ""
		n.mu.Unlock()
	}
}

// nativeHTTPClient trusts recording.kvs.ca_cert (or iot.ca_cert for an https:// control
// plane) besides the system's roots.
func nativeHTTPClient(cfg config.Config) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 30 * time.Second
	if ca := kvsCACert(cfg); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("recording.kvs.ca_cert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("recording.kvs.ca_cert %s: no PEM certificate in it", ca)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// SpoolStats reports the spool to the agent's metrics.
func (n *nativeKVS) SpoolStats() SpoolStats {
	st := n.spool.Stats()
	return SpoolStats{Bytes: st.PendingBytes, Fragments: st.Fragments, Oldest: st.Oldest, DiskBytes: st.Bytes}
}

// status is the native uploader's part of the status document.
func (n *nativeKVS) status() *KVSStatus {
	st := n.spool.Stats()
	s := &KVSStatus{SpoolBytes: st.Bytes, SpoolFragments: st.Fragments, DroppedFragments: st.DroppedFragments, DroppedBytes: st.DroppedBytes}
	if !st.Oldest.IsZero() {
		s.OldestAgeSeconds = time.Since(st.Oldest).Seconds()
	}
	n.mu.Lock()
	up, stopped := n.up, n.stopped
	s.Stream = n.stream
	n.mu.Unlock()
	if up != nil {
		us := up.Stats()
		s.Connected, s.Persisted, s.Skipped, s.LastError = us.Connected, us.Persisted, us.Skipped, us.LastError
		s.PersistedBytes = us.PersistedBytes
		s.UploadLagSeconds = us.UploadLag.Seconds()
	}
	if stopped != "" {
		s.LastError = stopped
	}
	return s
}

// kvsStatus returns the uploader in use and its state (nil before it starts).
func (a *Agent) kvsStatus() (string, *KVSStatus) {
	if a.native != nil {
		return a.kvsUploader, a.native.status()
	}
	a.mu.Lock()
	k := a.kvssink
	a.mu.Unlock()
	if k == nil {
		return a.kvsUploader, nil
	}
	return a.kvsUploader, k.status()
}

var (
	descKVSDropped   = prometheus.NewDesc("edgecam_kvs_spool_dropped_fragments_total", "Fragments dropped from the spool before upload (max_bytes or max_age).", nil, nil)
	descKVSDroppedB  = prometheus.NewDesc("edgecam_kvs_spool_dropped_bytes_total", "Bytes of the fragments dropped from the spool before upload.", nil, nil)
	descKVSWritten   = prometheus.NewDesc("edgecam_kvs_spool_written_bytes_total", "Bytes written to the spool's files (flash wear).", nil, nil)
	descKVSSyncs     = prometheus.NewDesc("edgecam_kvs_spool_fsyncs_total", "fsyncs of the spool's files.", nil, nil)
	descKVSLag       = prometheus.NewDesc("edgecam_kvs_upload_lag_seconds", "Age of the oldest fragment not yet persisted by KVS (0 when caught up).", nil, nil)
	descKVSAcks      = prometheus.NewDesc("edgecam_kvs_acks_total", "PutMedia acknowledgements by type.", []string{"type"}, nil)
	descKVSErrors    = prometheus.NewDesc("edgecam_kvs_errors_total", "PutMedia ERROR acknowledgements by ErrorId.", []string{"error_id"}, nil)
	descKVSSkipped   = prometheus.NewDesc("edgecam_kvs_fragments_skipped_total", "Fragments KVS refused for good (logged).", nil, nil)
	descKVSSent      = prometheus.NewDesc("edgecam_kvs_sent_bytes_total", "Bytes sent to PutMedia (resends included).", nil, nil)
	descKVSConnected = prometheus.NewDesc("edgecam_kvs_connected", "1 while a PutMedia connection is open.", nil, nil)
)

// nativeCollector reads the native uploader at each scrape.
type nativeCollector struct{ n *nativeKVS }

func (nativeCollector) Describe(chan<- *prometheus.Desc) {}

func (c nativeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.spool.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	counter(descKVSDropped, float64(st.DroppedFragments))
	counter(descKVSDroppedB, float64(st.DroppedBytes))
	counter(descKVSWritten, float64(st.WrittenBytes))
	counter(descKVSSyncs, float64(st.Syncs))
	c.n.mu.Lock()
	up := c.n.up
	c.n.mu.Unlock()
	var us kvsupload.UploaderStats
	if up != nil {
		us = up.Stats()
	} else if !st.Oldest.IsZero() {
		us.UploadLag = time.Since(st.Oldest)
	}
	ch <- prometheus.MustNewConstMetric(descKVSLag, prometheus.GaugeValue, us.UploadLag.Seconds())
	ch <- prometheus.MustNewConstMetric(descKVSConnected, prometheus.GaugeValue, boolf(us.Connected))
	for _, t := range []string{"BUFFERING", "RECEIVED", "PERSISTED", "ERROR", "IDLE"} {
		counter(descKVSAcks, float64(us.Acks[t]), t)
	}
	for id, v := range us.Errors {
		counter(descKVSErrors, float64(v), fmt.Sprint(id))
	}
	counter(descKVSSkipped, float64(us.Skipped))
	counter(descKVSSent, float64(us.SentBytes))
}

var _ = errors.New
