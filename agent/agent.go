// Package agent runs edgecam: it wires the capture pipeline, the Hub, the recorders and the
// link to AWS IoT (identity, telemetry, credentials), supervises them, and stops them
// cleanly so that the last recording is finalised.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/iot"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/webrtc"
	"go.uber.org/zap"
)

// Options configure an Agent.
type Options struct {
	Config config.Config
	Log    *zap.Logger
	// Version is reported in telemetry.
	Version string
	// RequireCloud makes Run fail when the first provisioning or connection attempt fails,
	// instead of recording locally while it keeps trying (dry-run and tests want to know).
	RequireCloud bool
}

// Agent is one running edgecam.
type Agent struct {
	opts    Options
	cfg     config.Config
	log     *zap.Logger
	hub     *media.Hub
	started time.Time

	source   VideoSource // GStreamer's capture pipeline or the Go RTSP client (source.go)
	recorder *media.SegmentRecorder
	janitor  *media.Janitor
	// kvsWanted is true when KVS recording is configured and kvssink is installed; it
	// starts once the device identity (the default stream name) is known.
	kvsWanted bool
	// native is edgecam's own KVS uploader (recording.kvs.uploader); kvsUploader names the
	// uploader in use (native or kvssink).
	native      *nativeKVS
	kvsUploader string
	// kvssink is the kvssink recorder once started (set under mu), for status and metrics.
	kvssink *kvssinkRun

	webrtc    *webrtc.Server
	motion    motionState
	publishes sync.WaitGroup // motion events under way to the broker
	events    eventQueue     // motion events waiting for the broker (events.go)

	metrics *Metrics // Prometheus registry and meters (metrics.go)
	// liveCfg is the configuration with the keys a reload changes while running (reload.go);
	// motionReload tells the motion loop that its settings changed.
	liveCfg      atomic.Pointer[config.Config]
	motionReload chan struct{}

	mu          sync.Mutex
	metricsAddr string
	gated       []media.Recorder // recorders that record motion events only
	live        *liveView
	thing       string
	conn        *iot.Conn
	creds       aws.CredentialsProvider
	recordCtx   context.Context
	recorders   sync.WaitGroup
	recErrs     []error
	stopping    bool
}

// New checks the configuration against what this machine can run and builds the agent.
func New(opts Options) (*Agent, error) {
	cfg := opts.Config
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	log := opts.Log
	// The state directory holds the device's key: private from the start, even when only
	// recordings land in it first.
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", cfg.StateDir, err)
	}
	plan, err := media.ResolvePlan(cfg.Media, media.DefaultProbe())
	if err != nil {
		return nil, err
	}
	hub := media.NewHub(media.HubOptions{
		PreRoll:     hubPreRoll(cfg),
		MaxBytes:    int(cfg.Media.Hub.PreRollMaxBytes),
		QueueFrames: cfg.Media.Hub.QueueFrames,
	})
	a := &Agent{opts: opts, cfg: cfg, log: log, hub: hub, motionReload: make(chan struct{}, 1)}
	a.liveCfg.Store(&cfg)
	a.source, err = newVideoSource(cfg, plan, hub, log.Named("source"))
	if err != nil {
		return nil, err
	}
	if err := a.setupAnalysis(plan); err != nil { // media.analysis.source (analysis.go)
		return nil, err
	}
	a.metrics = newMetrics(a)
	rec := cfg.Recording
	if rec.Mode != config.RecordOff && rec.KVS.Enabled {
		found, err := a.pickKVSUploader(cfg, log.Named("kvs"))
		if err != nil {
			return nil, err
		}
		if found {
			a.kvsWanted = true
		} else if a.native == nil {
			log.Warn("recording.kvs.enabled, but the kvssink GStreamer element is not installed (build it with scripts/build-kvssink.sh and set recording.kvs.plugin_dir; see README: Kinesis Video Streams): recording local segments instead",
				zap.String("recordings", cfg.RecordingsDir()))
			rec.Local.Enabled = true
		}
	}
	if rec.Mode != config.RecordOff && rec.Local.Enabled {
		dir := cfg.RecordingsDir()
		a.janitor = media.NewJanitor(media.JanitorOptions{
			Dir: dir, Ext: rec.Local.Format, MaxAge: rec.Local.MaxAge,
			MaxBytes: int64(rec.Local.MaxBytes), MaxShare: float64(rec.Local.MaxSharePercent) / 100,
			MinFree: int64(rec.Local.MinFreeBytes), Log: log.Named("janitor"),
			SegmentBytes: int64(cfg.Media.Encoder.BitrateKbps) * 1000 / 8 * int64(rec.Local.Segment/time.Second), Segment: rec.Local.Segment,
		})
		a.recorder, err = media.NewSegmentRecorder(media.SegmentOptions{
			Dir: dir, Segment: rec.Local.Segment, Format: rec.Local.Format, Log: log.Named("recorder"), Janitor: a.janitor,
		})
		if err != nil {
			return nil, err
		}
	}
	if cfg.WebRTC.Enabled && cfg.IoT.Endpoint != "" {
		a.webrtc, err = webrtc.NewServer(webrtc.Options{
			Hub:             hub,
			ICEServers:      a.liveICEServers,
			MaxViewers:      cfg.WebRTC.MaxViewers,
			UDPPort:         cfg.WebRTC.UDPPort,
			IncludeLoopback: cfg.WebRTC.Loopback,
			QueueFrames:     cfg.Media.Hub.QueueFrames,
			InitialBitrate:  cfg.Media.Encoder.BitrateKbps * 1000,
			// The estimate can only act on a bitrate the agent encodes.
			BandwidthEstimation: a.source.Encoding(),
			RequestKeyframe: func() {
				if err := a.source.ForceKeyframe(); err != nil && !errors.Is(err, media.ErrNotEncoding) {
					log.Debug("keyframe request failed", zap.Error(err))
				}
			},
			Log: log.Named("webrtc"),
		})
		if err != nil {
			return nil, err
		}
	}
	log.Info("capture pipeline", zap.String("source", cfg.Media.Source.Kind), zap.String("encoder", plan.Encode),
		zap.Bool("raw", plan.Raw), zap.String("description", a.source.Description()))
	return a, nil
}

// hubPreRoll is how far back the hub's ring reaches: media.hub.pre_roll when motion
// recordings start in the past (recording.mode motion), else nothing but the current GOP,
// which new viewers and recorders start from. The pre-roll of a 2 Mbit/s camera is about
// 1.3 MB of heap (more with the GC's headroom) that nothing else reads; a change of
// recording.mode restarts the agent, and with it the hub.
func hubPreRoll(cfg config.Config) time.Duration {
	if cfg.Recording.Mode != config.RecordMotion {
		return 0
	}
	return cfg.Media.Hub.PreRoll
}

// Hub returns the agent's frame hub.
func (a *Agent) Hub() *media.Hub { return a.hub }

// Run runs until ctx ends or the video source ends, then stops every part, finalising
// recordings. It returns nil on a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	// Subscribe before the source starts, so that the recording begins with its first frame.
	var recSub *media.Subscription
	motionMode := a.cfg.Recording.Mode == config.RecordMotion
	if a.recorder != nil && !motionMode {
		recSub = a.recorderSub(a.recorder.Name(), time.Time{})
	}
	if a.recorder != nil && motionMode {
		a.mu.Lock()
		a.gated = append(a.gated, a.recorder)
		a.mu.Unlock()
	}
	nativeSub := a.subscribeNativeKVS(motionMode)
	// Recorders stop after the source, so they can finish the last file; the cloud link
	// stops last, so that its final status message reports the finished recordings.
	recordCtx, stopRecording := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRecording()
	a.mu.Lock()
	a.recordCtx = recordCtx
	a.mu.Unlock()
	cloudCtx, stopCloud := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCloud()

	var cloudDone chan struct{}
	if a.cfg.IoT.Endpoint != "" {
		link := &cloudLink{a: a, first: make(chan error, 1)}
		cloudDone = make(chan struct{})
		go func() {
			defer close(cloudDone)
			link.run(cloudCtx)
		}()
		if a.opts.RequireCloud {
			select {
			case err := <-link.first:
				if err != nil {
					stopCloud()
					<-cloudDone
					if recSub != nil {
						recSub.Close()
					}
					if a.webrtc != nil {
						_ = a.webrtc.Close()
					}
					a.hub.Close()
					return fmt.Errorf("cloud: %w", err)
				}
			case <-ctx.Done():
			}
		}
	} else {
		a.log.Info("iot.endpoint not set: running without the cloud (no provisioning, telemetry or credentials)")
	}

	var janitorDone chan struct{}
	if a.janitor != nil {
		janitorDone = make(chan struct{})
		go func() {
			defer close(janitorDone)
			a.janitor.Run(recordCtx)
		}()
	}
	if recSub != nil {
		a.startRecorder(a.recorder, recSub)
	}
	nativeDone := a.runNativeKVS(cloudCtx, nativeSub)
	controlDone := make(chan struct{})
	go func() {
		defer close(controlDone)
		a.controlEncoder(recordCtx)
	}()
	motionDone := make(chan struct{})
	go func() {
		defer close(motionDone)
		a.runMotion(recordCtx)
	}()
	metricsDone := a.startMetrics(cloudCtx)

	srcErr := a.source.Run(ctx)
	switch {
	case errors.Is(srcErr, media.ErrSourceEnded):
		a.log.Info("video source ended")
		srcErr = nil
	case srcErr != nil:
		srcErr = fmt.Errorf("video source: %w", srcErr)
	}
	stopRecording()
	<-motionDone // its last event may stop motion recordings
	a.mu.Lock()
	a.stopping = true
	a.mu.Unlock()
	a.recorders.Wait()
	<-controlDone
	if janitorDone != nil {
		<-janitorDone
	}
	if a.webrtc != nil {
		_ = a.webrtc.Close()
	}
	a.hub.Close()
	a.publishes.Wait() // the last motion event goes out before the connection closes
	stopCloud()
	if cloudDone != nil {
		<-cloudDone
	}
	<-nativeDone
	if metricsDone != nil {
		<-metricsDone
	}

	fields := []zap.Field{zap.Uint64("frames", a.source.FrameCount())}
	if a.recorder != nil {
		fields = append(fields, zap.Int("segments", a.recorder.Count()), zap.String("recordings", a.cfg.RecordingsDir()))
	}
	a.log.Info("stopped", fields...)
	a.mu.Lock()
	recErr := errors.Join(a.recErrs...)
	a.mu.Unlock()
	return errors.Join(srcErr, recErr)
}

// startRecorder runs a recorder (supervised) until recording stops. It does nothing once
// the agent is stopping.
// recorderSub subscribes a recorder to the hub: from the current GOP, or from the pre-roll
// keyframe at or before since. Recorders get a longer queue than viewers: a file system
// stalls for longer than a network does, and a recorder should not lose frames to it.
func (a *Agent) recorderSub(name string, since time.Time) *media.Subscription {
	return a.hub.Subscribe(media.SubscribeOptions{Name: name, Since: since, QueueFrames: 4 * a.cfg.Media.Hub.QueueFrames})
}

func (a *Agent) startRecorder(rec media.Recorder, sub *media.Subscription) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping || a.recordCtx == nil {
		sub.Close()
		return
	}
	ctx := a.recordCtx
	a.recorders.Add(1)
	go func() {
		defer a.recorders.Done()
		again := func() *media.Subscription { return a.recorderSub(rec.Name(), time.Time{}) }
		if err := media.RecordLoop(ctx, rec, sub, again, a.log.Named("recorder")); err != nil {
			a.mu.Lock()
			a.recErrs = append(a.recErrs, fmt.Errorf("%s recording: %w", rec.Name(), err))
			a.mu.Unlock()
		}
	}()
}

// Recordings returns the local segment files written so far (the newest 1024).
func (a *Agent) Recordings() []string {
	if a.recorder == nil {
		return nil
	}
	return a.recorder.Files()
}

// Frames returns how many access units the source has published.
func (a *Agent) Frames() uint64 { return a.source.FrameCount() }

// Source returns the capture source (encoder controls, analysis frames).
func (a *Agent) Source() VideoSource { return a.source }

// Thing returns the device's thing name once it is known.
func (a *Agent) Thing() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.thing
}

func (a *Agent) setThing(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.thing = name
}

func (a *Agent) setConn(c *iot.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conn = c
}

func (a *Agent) deviceConn() *iot.Conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn
}

func (a *Agent) setLiveView(lv *liveView) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.live = lv
}

// liveICEServers returns the ICE servers of the signaling channel (nil before it connects).
func (a *Agent) liveICEServers() []webrtc.ICEServer {
	a.mu.Lock()
	lv := a.live
	a.mu.Unlock()
	if lv == nil {
		return nil
	}
	return lv.iceServers()
}

// WebRTC returns the live-view server (nil when live view is off).
func (a *Agent) WebRTC() *webrtc.Server { return a.webrtc }

func (a *Agent) setCredentials(c aws.CredentialsProvider) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creds = c
}

// Status is what the agent publishes to edgecam/<thing>/status.
type Status struct {
	ThingName     string    `json:"thingName"`
	State         string    `json:"state"` // running, stopped, offline
	Version       string    `json:"version"`
	Timestamp     time.Time `json:"timestamp"`
	UptimeSeconds int64     `json:"uptimeSeconds"`
	Video         struct {
		Source   string `json:"source"`
		Frames   uint64 `json:"frames"`
		Restarts int    `json:"restarts"`
	} `json:"video"`
	Recording struct {
		Mode     string `json:"mode"`
		Segments int    `json:"segments"`
		// KVSUploader is native or kvssink when recording to KVS; KVS is that uploader's state.
		KVSUploader string     `json:"kvsUploader,omitempty"`
		KVS         *KVSStatus `json:"kvs,omitempty"`
	} `json:"recording"`
	Subscribers int `json:"subscribers"`
	Viewers     int `json:"viewers"`
	Motion      struct {
		Active bool    `json:"active"`
		Events int     `json:"events"`
		Score  float64 `json:"score"`
		// Analysis is where analysis frames come from and whether they flow (analysis.go).
		Analysis *AnalysisStatus `json:"analysis,omitempty"`
	} `json:"motion"`
}

// StatusNow returns the agent's status.
func (a *Agent) StatusNow(state string) Status {
	s := Status{ThingName: a.Thing(), State: state, Version: a.opts.Version, Timestamp: time.Now().UTC().Truncate(time.Millisecond)}
	if !a.started.IsZero() {
		s.UptimeSeconds = int64(time.Since(a.started).Seconds())
	}
	s.Video.Source = a.cfg.Media.Source.Kind
	s.Video.Frames, s.Video.Restarts = a.source.Stats()
	s.Recording.Mode = a.cfg.Recording.Mode
	s.Recording.KVSUploader, s.Recording.KVS = a.kvsStatus()
	if a.recorder != nil {
		s.Recording.Segments = a.recorder.Count()
	}
	s.Subscribers = a.hub.Subscribers()
	if a.webrtc != nil {
		s.Viewers = a.webrtc.Viewers()
	}
	a.motion.mu.Lock()
	s.Motion.Active, s.Motion.Events, s.Motion.Score = a.motion.active, a.motion.events, a.motion.score
	a.motion.mu.Unlock()
	s.Motion.Analysis = a.analysisStatus()
	return s
}

func (a *Agent) statusJSON(state string) []byte {
	b, _ := json.Marshal(a.StatusNow(state))
	return b
}
