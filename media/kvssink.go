package media

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgecam/edgecam/media/gst"
	"go.uber.org/zap"
)

// KVS authentication methods for kvssink.
const (
	// KVSAuthCredentialFile: kvssink re-reads a credential file that someone keeps fresh.
	KVSAuthCredentialFile = "credential_file"
	// KVSAuthIoTCertificate: kvssink fetches credentials itself with the device certificate.
	KVSAuthIoTCertificate = "iot_certificate"
)

// KVSSinkOptions configure recording into Kinesis Video Streams through kvssink.
type KVSSinkOptions struct {
	// StreamName is the KVS stream (1 to 256 of letters, digits, '_', '.', '-').
	StreamName string
	Region     string
	// StorageSizeMB is kvssink's in-memory buffer.
	StorageSizeMB int
	// FragmentDuration is kvssink's fragment length; fragments start on keyframes.
	FragmentDuration time.Duration
	// RetentionHours is the retention set when kvssink creates the stream.
	RetentionHours int
	// StreamingType is realtime, near-realtime or offline.
	StreamingType string
	// CreateStream lets kvssink create the stream when it does not exist.
	CreateStream bool

	// Auth is KVSAuthCredentialFile (CredentialFile) or KVSAuthIoTCertificate (IoT*).
	Auth           string
	CredentialFile string
	// IoT* configure kvssink's own IoT credentials fetch.
	IoTEndpoint, CertPath, KeyPath, CAPath, RoleAlias, ThingName string

	// ControlPlaneURI, when set, replaces the KVS control plane (kvssink's
	// CONTROL_PLANE_URI); CACertPath is the CA file kvssink trusts for it
	// (KVSSINK_CA_CERT_PATH). Both are process-wide: kvssink reads them from the
	// environment, the CA path once per process.
	ControlPlaneURI string
	CACertPath      string

	// LogConfig is the log4cplus properties file kvssink configures its logging from
	// (see KVSSinkLog). Empty: kvssink's default, DEBUG lines on stdout.
	LogConfig string
	// StartupTimeout bounds the wait for the first fragment acknowledgement after the
	// first frame (kvssink itself retries an unreachable control plane for ever), and the
	// time without any acknowledgement while frames flow. Zero: 30 s.
	StartupTimeout time.Duration
	// Drain bounds the wait for the last fragment to be persisted when recording stops.
	// Zero: 15 s.
	Drain time.Duration
	// Preflight, when set, runs before each kvssink starts (the agent checks, and creates
	// when allowed, the stream through the KVS API): a failure ends Record at once, with a
	// clear error, instead of a kvssink blocked in its stream set-up.
	Preflight func(ctx context.Context) error
	Log       *zap.Logger
}

// kvsStreamingTypes are kvssink's streaming-type enum values.
var kvsStreamingTypes = map[string]int{"realtime": 0, "near-realtime": 1, "offline": 2}

// Description returns the recording pipeline: an appsrc named RecorderSrc, h264parse to
// AVC (kvssink takes length-prefixed H.264 only) and kvssink named KVSSinkName. kvssink
// takes each buffer's timestamp as its absolute time (use-original-pts): the feeder stamps
// buffers with their capture wall time, so fragments carry it even when they start in the
// pre-roll.
func (o KVSSinkOptions) Description() (string, error) {
	if o.StreamName == "" {
		return "", errors.New("recording.kvs: no stream name (set recording.kvs.stream_name, or provision the device)")
	}
	st, ok := kvsStreamingTypes[o.StreamingType]
	if !ok {
		return "", fmt.Errorf("recording.kvs.streaming_type %q is not supported: use realtime, near-realtime or offline", o.StreamingType)
	}
	var auth string
	switch o.Auth {
	case KVSAuthCredentialFile, "":
		if o.CredentialFile == "" {
			return "", errors.New("recording.kvs.auth credential_file: no credential file (set credentials.endpoint)")
		}
		auth = "credential-path=" + quote(o.CredentialFile)
	case KVSAuthIoTCertificate:
		// A GstStructure whose values are all strings; without iot-thing-name kvssink uses
		// the stream name, and the credentials provider answers 403 when they differ.
		auth = "iot-certificate=" + quote(fmt.Sprintf("iot-certificate,endpoint=%s,cert-path=%s,key-path=%s,ca-path=%s,role-aliases=%s,iot-thing-name=%s",
			o.IoTEndpoint, o.CertPath, o.KeyPath, o.CAPath, o.RoleAlias, o.ThingName))
	default:
		return "", fmt.Errorf("recording.kvs.auth %q is not supported: use credential_file or iot_certificate", o.Auth)
	}
	drain := o.drain()
	sink := fmt.Sprintf("kvssink name=%s stream-name=%s aws-region=%s storage-size=%d fragment-duration=%d key-frame-fragmentation=true "+
		"streaming-type=%d retention-period=%d restart-on-error=true allow-create-stream=%t use-original-pts=true stop-stream-timeout=%d %s",
		KVSSinkName, quote(o.StreamName), quote(o.Region), o.StorageSizeMB, o.FragmentDuration.Milliseconds(), st, o.RetentionHours,
		o.CreateStream, int(drain.Seconds()), auth)
	if o.LogConfig != "" {
		sink += " log-config=" + quote(o.LogConfig)
	}
	return strings.Join([]string{appsrcH264, "h264parse", "video/x-h264,stream-format=avc,alignment=au", sink}, " ! "), nil
}

func (o KVSSinkOptions) drain() time.Duration {
	if o.Drain <= 0 {
		return 15 * time.Second
	}
	return max(o.Drain, time.Second)
}

func (o KVSSinkOptions) startupTimeout() time.Duration {
	if o.StartupTimeout <= 0 {
		return 30 * time.Second
	}
	return o.StartupTimeout
}

// FindKVSSink makes kvssink available to this process and says where it came from: dir
// when set (an error when it holds no kvssink), else the first of candidates that holds
// one, else GStreamer's own plugin path (GST_PLUGIN_PATH, the system directories). found
// is "" when kvssink is nowhere.
func FindKVSSink(dir string, candidates []string) (found string, err error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", fmt.Errorf("recording.kvs.plugin_dir %s: %w", dir, err)
		}
		if _, err := os.Stat(filepath.Join(abs, "libgstkvssink.so")); err != nil {
			return "", fmt.Errorf("recording.kvs.plugin_dir %s holds no libgstkvssink.so: build it with scripts/build-kvssink.sh and point plugin_dir at its output", dir)
		}
		if _, err := gst.AddPluginDir(abs); err != nil {
			return "", fmt.Errorf("recording.kvs.plugin_dir: %w", err)
		}
		if !gst.HasElement("kvssink") {
			return "", fmt.Errorf("recording.kvs.plugin_dir %s: GStreamer does not load its libgstkvssink.so (built for another GStreamer or architecture? run GST_PLUGIN_PATH=%s gst-inspect-1.0 kvssink to see why)", dir, abs)
		}
		return abs, nil
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "libgstkvssink.so")); err != nil {
			continue
		}
		if _, err := gst.AddPluginDir(c); err == nil && gst.HasElement("kvssink") {
			return c, nil
		}
	}
	if gst.HasElement("kvssink") {
		return "GStreamer plugin path", nil
	}
	return "", nil
}

// KVSSinkStats count what kvssink reported, for logs, status and tests.
type KVSSinkStats struct {
	// Sessions counts kvssink pipelines started (one per recording, restart or motion event).
	Sessions int
	// Frames and Bytes count the access units handed to kvssink.
	Frames uint64
	Bytes  int64
	// Persisted counts PERSISTED acknowledgements; Errors counts ERROR acks and stream errors.
	Persisted, Errors int
	// LastAck is when the newest acknowledgement arrived; LastPersisted is the timecode of
	// the newest persisted fragment (its first frame's capture wall time).
	LastAck       time.Time
	LastPersisted time.Time
}

// KVSSinkRecorder records a subscription into Kinesis Video Streams through kvssink. Each
// Record runs one kvssink pipeline; a start-up that gets no acknowledgement within
// StartupTimeout, a stream that stops being acknowledged, or a bus error ends Record with
// an error, and RecordLoop starts it again with back-off.
type KVSSinkRecorder struct {
	opts KVSSinkOptions
	desc string
	log  *zap.Logger

	mu    sync.Mutex
	stats KVSSinkStats
	// lingering is closed when a kvssink that an earlier Record gave up on has stopped.
	lingering chan struct{}
}

// ErrKVSUnreachable is wrapped by Record's error when kvssink got no acknowledgement in
// time: the control plane or the data endpoint is unreachable, or refuses the stream.
var ErrKVSUnreachable = errors.New("no acknowledgement from Kinesis Video Streams")

// NewKVSSinkRecorder checks the options and sets kvssink's process environment
// (CONTROL_PLANE_URI, KVSSINK_CA_CERT_PATH). kvssink must be available (FindKVSSink).
func NewKVSSinkRecorder(o KVSSinkOptions) (*KVSSinkRecorder, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	desc, err := o.Description()
	if err != nil {
		return nil, err
	}
	if err := setKVSSinkEnv("CONTROL_PLANE_URI", o.ControlPlaneURI); err != nil {
		return nil, err
	}
	if o.CACertPath != "" {
		st, err := os.Stat(o.CACertPath)
		if err != nil {
			return nil, fmt.Errorf("recording.kvs.ca_cert: %w", err)
		}
		// kvssink takes a directory of certificates, or a file whose name ends in .pem.
		if !st.IsDir() && !strings.HasSuffix(strings.ToLower(o.CACertPath), ".pem") {
			return nil, fmt.Errorf("recording.kvs.ca_cert %s: kvssink's CA file name must end in .pem (or be a directory): copy or link it to a .pem name", o.CACertPath)
		}
	}
	if err := setKVSSinkEnv("KVSSINK_CA_CERT_PATH", o.CACertPath); err != nil {
		return nil, err
	}
	log := o.Log.With(zap.String("recorder", "kvs"), zap.String("stream", o.StreamName))
	if o.Auth != KVSAuthIoTCertificate && os.Getenv("AWS_ACCESS_KEY_ID") != "" && os.Getenv("AWS_SECRET_ACCESS_KEY") != "" {
		log.Warn("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set in the environment: kvssink uses them instead of the credential file, and never refreshes them; unset them for the service")
	}
	if r := os.Getenv("AWS_DEFAULT_REGION"); r != "" && r != o.Region {
		log.Warn("AWS_DEFAULT_REGION overrides aws.region for kvssink", zap.String("AWS_DEFAULT_REGION", r), zap.String("aws.region", o.Region))
	}
	return &KVSSinkRecorder{opts: o, desc: desc, log: log}, nil
}

// setKVSSinkEnv sets (or, for "", unsets) a variable kvssink reads from the C environment;
// with cgo, os.Setenv updates it too.
func setKVSSinkEnv(name, value string) error {
	if os.Getenv(name) == value {
		return nil
	}
	if value == "" {
		return os.Unsetenv(name)
	}
	if err := os.Setenv(name, value); err != nil {
		return fmt.Errorf("kvssink environment %s: %w", name, err)
	}
	return nil
}

// Name identifies the recorder.
func (r *KVSSinkRecorder) Name() string { return "kvs" }

// Stats returns what kvssink reported so far.
func (r *KVSSinkRecorder) Stats() KVSSinkStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Record streams the subscription into KVS until ctx ends or the subscription closes, then
// sends the end of stream and waits up to Drain for the last fragment. Record closes sub.
//
// kvssink sets its stream up (DescribeStream, CreateStream, GetDataEndpoint) inside its
// start, which GStreamer cannot interrupt: with an unreachable control plane it blocks for
// minutes. Record runs the pipeline aside and returns at the start-up time-out anyway; the
// abandoned kvssink is waited for before the next one starts, so they never pile up.
func (r *KVSSinkRecorder) Record(ctx context.Context, sub *Subscription) error {
	defer sub.Close()
	if !r.waitLingering(ctx) {
		return nil
	}
	if r.opts.Preflight != nil {
		if err := r.opts.Preflight(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kvs: %w", err)
		}
	}
	p, err := gst.Parse(r.desc, gst.Options{Name: "kvs", Log: r.log})
	if err != nil {
		return err
	}
	src, err := p.AppSrc(RecorderSrc)
	if err != nil {
		return err
	}
	acked := make(chan struct{}, 1)
	if err := p.WatchKVSSink(KVSSinkName, gst.KVSSinkEvents{
		Ack:         func(a gst.KVSAck) { r.onAck(a, acked) },
		StreamError: r.onStreamError,
	}); err != nil {
		return err
	}
	r.mu.Lock()
	r.stats.Sessions++
	r.mu.Unlock()

	drain := r.opts.drain()
	runCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	firstFrame := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		r.feed(feedCtx, sub, src, firstFrame)
		_ = src.EndOfStream()
		time.AfterFunc(drain, abort)
	}()
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(runCtx) }()
	failed := make(chan error, 1)
	go func() {
		if err := r.watch(runCtx, feedCtx, firstFrame, acked); err != nil {
			failed <- err
		}
	}()

	select {
	case err = <-runDone:
	case err = <-failed:
		stopFeed()
		abort()
		return r.settle(runDone, fed, err, 5*time.Second)
	case <-ctx.Done():
		// The feeder sends the end of stream; kvssink sends what it holds within the drain.
		select {
		case err = <-runDone:
		case err = <-failed:
			abort()
			return r.settle(runDone, fed, err, 5*time.Second)
		case <-time.After(drain + 5*time.Second):
			abort()
			return r.settle(runDone, fed, fmt.Errorf("kvs: kvssink did not stop within %s", drain+5*time.Second), 5*time.Second)
		}
	}
	stopFeed()
	<-fed
	abort()
	select {
	case ferr := <-failed:
		return ferr
	default:
	}
	switch {
	case errors.Is(err, gst.ErrEOS):
		return nil
	case err == nil:
		return fmt.Errorf("kvs: the last fragments were not sent within %s of the stop", drain)
	}
	return err
}

// settle waits up to wait for an aborted pipeline to stop, else leaves it to stop by itself
// (the next Record waits for it), and returns err.
func (r *KVSSinkRecorder) settle(runDone <-chan error, fed <-chan struct{}, err error, wait time.Duration) error {
	select {
	case <-runDone:
		<-fed
		return err
	case <-time.After(wait):
	}
	done := make(chan struct{})
	r.mu.Lock()
	r.lingering = done
	r.mu.Unlock()
	go func() {
		defer close(done)
		<-runDone
		<-fed
	}()
	return err
}

// waitLingering waits for a kvssink abandoned by an earlier Record; false when ctx ended.
func (r *KVSSinkRecorder) waitLingering(ctx context.Context) bool {
	r.mu.Lock()
	l := r.lingering
	r.mu.Unlock()
	if l == nil {
		return true
	}
	select {
	case <-l:
		return true
	default:
	}
	r.log.Info("waiting for the previous kvssink to give up its stream set-up before starting a new one (it blocks until its control-plane calls time out)")
	select {
	case <-l:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *KVSSinkRecorder) onAck(a gst.KVSAck, acked chan struct{}) {
	now := time.Now()
	r.mu.Lock()
	r.stats.LastAck = now
	switch a.Type {
	case "PERSISTED":
		r.stats.Persisted++
		r.stats.LastPersisted = time.Unix(0, int64(a.Timecode))
	case "ERROR":
		r.stats.Errors++
	}
	r.mu.Unlock()
	select {
	case acked <- struct{}{}:
	default:
	}
	switch a.Type {
	case "ERROR":
		r.log.Warn("Kinesis Video Streams refused a fragment (kvssink sends it again on a new connection)",
			zap.Time("fragment", time.Unix(0, int64(a.Timecode))), zap.Int("result", a.Result))
	case "PERSISTED":
		if ce := r.log.Check(zap.DebugLevel, "fragment persisted"); ce != nil {
			ce.Write(zap.Time("fragment", time.Unix(0, int64(a.Timecode))), zap.String("number", a.Sequence))
		}
	}
}

func (r *KVSSinkRecorder) onStreamError(status uint64) {
	r.mu.Lock()
	r.stats.Errors++
	r.mu.Unlock()
	r.log.Warn("kvssink reported a stream error (it resets the stream itself when it can)", zap.String("status", fmt.Sprintf("0x%08x", status)))
}

// watch ends the session when kvssink gets no acknowledgement: none within StartupTimeout
// of the first frame (an unreachable control plane or data endpoint), or none for
// StartupTimeout plus kvssink's own 60 s connection staleness once acks flowed (kvssink
// reconnects by itself within that).
func (r *KVSSinkRecorder) watch(runCtx, feedCtx context.Context, firstFrame, acked <-chan struct{}) error {
	select {
	case <-firstFrame:
	case <-runCtx.Done():
		return nil
	}
	startup := r.opts.startupTimeout()
	started := time.Now()
	timer := time.NewTimer(startup)
	defer timer.Stop()
	select {
	case <-acked:
		r.log.Info("recording into Kinesis Video Streams", zap.Duration("first_ack_after", time.Since(started).Round(time.Millisecond)))
	case <-timer.C:
		target := "the KVS control plane (kinesisvideo." + r.opts.Region + ".amazonaws.com)"
		if r.opts.ControlPlaneURI != "" {
			target = "the KVS control plane " + r.opts.ControlPlaneURI
		}
		return fmt.Errorf("%w within %s of the first frame: %s or its data endpoint is unreachable, or refuses the stream or the credentials (kvssink's log lines say which); restarting kvssink: %w",
			ErrKVSUnreachable, startup, target, errKVSStartup)
	case <-runCtx.Done():
		return nil
	}
	stall := startup + 60*time.Second
	for {
		timer.Reset(stall)
		select {
		case <-acked:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
			if feedCtx.Err() != nil {
				return nil // stopping: the drain bounds the wait
			}
			return fmt.Errorf("%w for %s while frames were sent: restarting kvssink", ErrKVSUnreachable, stall)
		case <-runCtx.Done():
			return nil
		}
	}
}

// errKVSStartup marks a start-up time-out.
var errKVSStartup = errors.New("start-up time-out")

// feed pushes units until ctx ends, the subscription closes or the pipeline stops taking
// them, each stamped with its capture wall time (nanoseconds since the epoch), which kvssink
// uses as the frame's absolute time. The first pushed unit closes firstFrame.
func (r *KVSSinkRecorder) feed(ctx context.Context, sub *Subscription, src *gst.AppSrc, firstFrame chan struct{}) {
	var st wallStamper
	first := true
	for {
		au, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if first && !au.Keyframe {
			continue
		}
		ts := st.stamp(au)
		buf := gst.Buffer{Data: au.Data, PTS: ts, DTS: ts, Duration: au.Duration, Delta: !au.Keyframe}
		if err := src.Push(buf); err != nil {
			r.log.Debug("kvssink pipeline stopped taking frames", zap.Error(err))
			return
		}
		r.mu.Lock()
		r.stats.Frames++
		r.stats.Bytes += int64(len(au.Data))
		r.mu.Unlock()
		if first {
			first = false
			close(firstFrame)
		}
	}
}

// wallStamper turns access units' stream timestamps into capture wall times, as
// nanoseconds since the epoch, that always go forward: the first unit anchors the stream
// timeline to its wall time, and a keyframe whose wall time is more than maxWallDrift ahead
// of the timeline re-anchors it (a clock stepped forward, a pipeline restart that left a
// hole, drift over days). A wall clock that stepped back is not followed: KVS refuses
// timecodes going back within a stream, and dropping video until the clock catches up
// would lose it; the session's timestamps run ahead by the step instead, until the next
// session starts.
type wallStamper struct {
	anchor  time.Duration // wall (since the epoch) minus PTS
	last    time.Duration // the newest timestamp handed out
	started bool
}

const maxWallDrift = time.Second

func (w *wallStamper) stamp(au AccessUnit) time.Duration {
	wall := time.Duration(au.Wall.UnixNano())
	if !w.started {
		w.started = true
		w.anchor = wall - au.PTS
		w.last = wall
		return wall
	}
	ts := w.anchor + au.PTS
	if au.Keyframe && wall-ts > maxWallDrift {
		w.anchor = wall - au.PTS
		ts = wall
	}
	if ts <= w.last { // a repeated or reordered stream timestamp
		ts = w.last + time.Millisecond
	}
	w.last = ts
	return ts
}
