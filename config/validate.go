package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Allowed values of the enumerated keys.
var (
	LogLevels      = []string{"debug", "info", "warn", "error"}
	LogFormats     = []string{"auto", "console", "json"}
	SourceKinds    = []string{SourceV4L2, SourceLibcamera, SourceRTSP, SourceFile, SourceTest, SourceCustom}
	SourceFormats  = []string{FormatAuto, FormatRaw, FormatH264}
	Transports     = []string{TransportAuto, TransportTCP, TransportUDP}
	RTSPClients    = []string{RTSPClientAuto, RTSPClientGo, RTSPClientGStreamer}
	EncoderKinds   = []string{EncoderAuto, EncoderX264, EncoderV4L2, EncoderPassthrough}
	X264Presets    = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium"}
	StreamingTypes = []string{"realtime", "near-realtime", "offline"}
	KVSAuths       = []string{KVSAuthCredentialFile, KVSAuthIoTCertificate}
	KVSUploaders   = []string{KVSUploaderAuto, KVSUploaderNative, KVSUploaderKVSSink}
	RecordModes    = []string{RecordContinuous, RecordMotion, RecordOff}
	Methods        = []string{MethodCSR, MethodKeys}
	KeyTypes       = []string{KeyECDSAP256, KeyRSA2048}
	SegmentFormats = []string{FormatMKV, FormatMP4}
)

// checker collects problems.
type checker struct{ ps Problems }

func (c *checker) add(key, format string, args ...any) {
	c.ps = append(c.ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) oneOf(key, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		c.add(key, "%q is not allowed; use one of %s", v, strings.Join(allowed, ", "))
	}
}

func (c *checker) intRange(key string, v, lo, hi int) {
	if v < lo || v > hi {
		c.add(key, "%d is out of range; use %d to %d", v, lo, hi)
	}
}

func (c *checker) durRange(key string, v, lo, hi time.Duration) {
	if v < lo || v > hi {
		c.add(key, "%s is out of range; use %s to %s", v, lo, hi)
	}
}

// Validate checks every key and returns all problems found.
func (cfg *Config) Validate() Problems {
	var c checker
	if strings.TrimSpace(cfg.StateDir) == "" {
		c.add("state_dir", "must not be empty; use a directory such as /var/lib/edgecam")
	}
	c.oneOf("log.level", cfg.Log.Level, LogLevels)
	c.oneOf("log.format", cfg.Log.Format, LogFormats)

	cfg.validateCloud(&c)

	cfg.validateSource(&c)

	enc := cfg.Media.Encoder
	c.oneOf("media.encoder.kind", enc.Kind, EncoderKinds)
	c.intRange("media.encoder.bitrate_kbps", enc.BitrateKbps, 50, 50000)
	// Kinesis Video Streams rejects fragments longer than 10 s; a fragment starts at a keyframe.
	c.durRange("media.encoder.gop", enc.GOP, 200*time.Millisecond, 10*time.Second)
	c.oneOf("media.encoder.x264_preset", enc.X264Preset, X264Presets)
	if enc.Kind == EncoderPassthrough && cfg.Media.deliversRaw() {
		c.add("media.encoder.kind", "passthrough needs a source that delivers H.264 (rtsp, file, a v4l2 camera with format h264, custom with format h264); this source delivers raw video, use auto, x264 or v4l2")
	}

	an := cfg.Media.Analysis
	c.intRange("media.analysis.width", an.Width, 32, 1920)
	c.intRange("media.analysis.height", an.Height, 32, 1080)
	c.intRange("media.analysis.framerate", an.Framerate, 1, 30)
	c.oneOf("media.analysis.decoder", an.Decoder, AnalysisDecoders)
	cfg.validateAnalysisSource(&c)
	c.durRange("media.stall_timeout", cfg.Media.StallTimeout, time.Second, 5*time.Minute)
	c.durRange("media.restart_backoff", cfg.Media.RestartBackoff, time.Second, 10*time.Minute)

	hub := cfg.Media.Hub
	c.durRange("media.hub.pre_roll", hub.PreRoll, 0, time.Minute)
	if hub.PreRollMaxBytes < MiB || hub.PreRollMaxBytes > GiB {
		c.add("media.hub.pre_roll_max_bytes", "%s is out of range; use 1MiB to 1GiB", hub.PreRollMaxBytes)
	}
	c.intRange("media.hub.queue_frames", hub.QueueFrames, 8, 10000)

	cfg.validateMotion(&c)
	if l := cfg.Metrics.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			c.add("metrics.listen", "%q: write host:port, e.g. 127.0.0.1:9464 (empty turns metrics off)", l)
		}
	}
	if cfg.Metrics.PProf && cfg.Metrics.Listen == "" {
		c.add("metrics.pprof", "true needs metrics.listen: set a loopback host:port such as 127.0.0.1:9464, or pprof: false")
	}

	rec := cfg.Recording
	c.oneOf("recording.mode", rec.Mode, RecordModes)
	if rec.Mode == RecordMotion && (!cfg.Motion.Enabled || !cfg.Media.Analysis.Enabled) {
		c.add("recording.mode", "motion needs motion.enabled and media.analysis.enabled")
	}
	c.oneOf("recording.local.format", rec.Local.Format, SegmentFormats)
	c.durRange("recording.local.segment", rec.Local.Segment, 2*time.Second, time.Hour)
	if rec.Local.Segment < enc.GOP {
		c.add("recording.local.segment", "%s is shorter than media.encoder.gop (%s); segments split at keyframes", rec.Local.Segment, enc.GOP)
	}
	if rec.Local.MaxAge != 0 && rec.Local.MaxAge < time.Minute {
		c.add("recording.local.max_age", "%s is too short; use 0 (keep) or at least 1m", rec.Local.MaxAge)
	}
	if rec.Local.MaxBytes != 0 && rec.Local.MaxBytes < 16*MiB {
		c.add("recording.local.max_bytes", "%s is too small; use 0 (no bound) or at least 16MiB", rec.Local.MaxBytes)
	}
	if rec.Local.MaxSharePercent != 0 {
		c.intRange("recording.local.max_share_percent", rec.Local.MaxSharePercent, 1, 95)
	}
	kvs := rec.KVS
	if kvs.StreamName != "" && !kvsNameRE.MatchString(kvs.StreamName) {
		c.add("recording.kvs.stream_name", "%q: use 1 to 256 of letters, digits, '_', '.' and '-'", kvs.StreamName)
	}
	c.intRange("recording.kvs.storage_size_mb", kvs.StorageSizeMB, 10, 4096)
	c.durRange("recording.kvs.fragment_duration", kvs.FragmentDuration, time.Second, 10*time.Second)
	c.intRange("recording.kvs.retention_hours", kvs.RetentionHours, 0, 87600)
	c.oneOf("recording.kvs.streaming_type", kvs.StreamingType, StreamingTypes)
	c.oneOf("recording.kvs.auth", kvs.Auth, KVSAuths)
	c.durRange("recording.kvs.startup_timeout", kvs.StartupTimeout, 5*time.Second, 10*time.Minute)
	c.oneOf("recording.kvs.uploader", kvs.Uploader, KVSUploaders)
	if kvs.Spool.MaxBytes < 16*MiB {
		c.add("recording.kvs.spool.max_bytes", "%s is too small to hold a backlog: use at least 16MiB", kvs.Spool.MaxBytes)
	}
	if kvs.Spool.MaxAge != 0 {
		c.durRange("recording.kvs.spool.max_age", kvs.Spool.MaxAge, time.Minute, 365*24*time.Hour)
	}
	if kvs.Spool.MaxUploadKbps != 0 {
		c.intRange("recording.kvs.spool.max_upload_kbps", kvs.Spool.MaxUploadKbps, 64, 100_000)
		if br := cfg.Media.Encoder.BitrateKbps; br > 0 && kvs.Spool.MaxUploadKbps <= br {
			c.add("recording.kvs.spool.max_upload_kbps", "%d is not above media.encoder.bitrate_kbps (%d): a backlog would never drain; use at least twice the bitrate, or 0", kvs.Spool.MaxUploadKbps, br)
		}
	}
	if u := kvs.ControlPlaneURI; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		c.add("recording.kvs.control_plane_uri", "%q: use an http:// or https:// URL", u)
	}
	if kvs.Enabled && cfg.IoT.Endpoint == "" {
		c.add("recording.kvs.enabled", "needs the device identity: set iot.endpoint (and credentials.endpoint)")
	} else if kvs.Enabled && kvs.Auth == KVSAuthCredentialFile && cfg.Credentials.Endpoint == "" {
		c.add("recording.kvs.auth", "credential_file needs credentials.endpoint, which keeps the file fresh")
	}
	return c.ps
}

// kvsNameRE is Kinesis Video's rule for stream and signaling channel names.
var kvsNameRE = boundedRE{regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`), 256}

// boundedRE matches 1 to max characters of an ASCII class: the same as the pattern
// {1,max}, whose compiled program (max copies of the class, up to 90 KB each) would stay in
// the agent's heap for good.
type boundedRE struct {
	re  *regexp.Regexp
	max int
}

func (b boundedRE) MatchString(s string) bool {
	return len(s) >= 1 && len(s) <= b.max && b.re.MatchString(s)
}

// deliversRaw reports whether the source delivers raw video as configured (auto formats
// count as H.264-capable: they are resolved when the camera is probed).
func (m Media) deliversRaw() bool {
	switch m.Source.Kind {
	case SourceTest, SourceLibcamera:
		return true
	case SourceV4L2, SourceCustom:
		return m.Source.Format == FormatRaw
	}
	return false
}

// validateSource checks media.source.
func (cfg *Config) validateSource(c *checker) {
	src := cfg.Media.Source
	c.oneOf("media.source.kind", src.Kind, SourceKinds)
	c.oneOf("media.source.format", src.Format, SourceFormats)
	switch src.Kind {
	case SourceFile:
		switch st, err := os.Stat(src.Path); {
		case src.Path == "":
			c.add("media.source.path", "must be set when media.source.kind is file; name an MP4, Matroska or MPEG-TS file with H.264 video")
		case err != nil:
			c.add("media.source.path", "%v", err)
		case st.IsDir():
			c.add("media.source.path", "%s is a directory; name a video file", src.Path)
		}
	case SourceV4L2:
		if src.Device == "" {
			c.add("media.source.device", "must be set when media.source.kind is v4l2, e.g. /dev/video0 (edgecam devices lists cameras)")
		}
	case SourceRTSP:
		u, err := url.Parse(src.URL)
		switch {
		case src.URL == "":
			c.add("media.source.url", "must be set when media.source.kind is rtsp, e.g. rtsp://user:password@192.168.1.20:554/stream1")
		case err != nil:
			c.add("media.source.url", "%v", RedactURL(err.Error()))
		case u.Scheme != "rtsp" && u.Scheme != "rtsps":
			c.add("media.source.url", "%q: use an rtsp:// or rtsps:// URL", RedactURL(src.URL))
		case u.Host == "":
			c.add("media.source.url", "%q has no host", RedactURL(src.URL))
		}
		c.oneOf("media.source.transport", src.Transport, Transports)
		c.oneOf("media.source.rtsp_client", src.RTSPClient, RTSPClients)
		if src.RTSPClient == RTSPClientGo && strings.HasPrefix(src.URL, "rtsps://") {
			c.add("media.source.rtsp_client", "go reads rtsp:// addresses only: set it to gstreamer (or auto) for an rtsps:// camera")
		}
		if src.RTSPClient == RTSPClientGo && (cfg.Media.Encoder.Kind == EncoderX264 || cfg.Media.Encoder.Kind == EncoderV4L2) {
			c.add("media.source.rtsp_client", "go passes the camera's H.264 through: set media.encoder.kind to auto or passthrough, or rtsp_client to gstreamer to encode again")
		}
		c.durRange("media.source.latency", src.Latency, 0, 10*time.Second)
	case SourceCustom:
		if strings.TrimSpace(src.Pipeline) == "" {
			c.add("media.source.pipeline", "must be set when media.source.kind is custom: a gst-launch fragment for the source part")
		}
		if src.Format == FormatAuto {
			c.add("media.source.format", "must be raw or h264 when media.source.kind is custom: say what the fragment delivers")
		}
	}
	c.intRange("media.source.width", src.Width, 16, 7680)
	c.intRange("media.source.height", src.Height, 16, 4320)
	if src.Width%2 != 0 || src.Height%2 != 0 {
		c.add("media.source.width", "%dx%d: width and height must be even for 4:2:0 video", src.Width, src.Height)
	}
	c.intRange("media.source.framerate", src.Framerate, 1, 120)
}

var (
	regionRE   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
	serialRE   = boundedRE{regexp.MustCompile(`^[a-zA-Z0-9:_-]+$`), 128}
	templateRE = boundedRE{regexp.MustCompile(`^[0-9A-Za-z_-]+$`), 36}
	aliasRE    = boundedRE{regexp.MustCompile(`^[\w=,@-]+$`), 128}
)

// validateCloud checks the AWS, IoT, provisioning, credentials and telemetry keys.
func (cfg *Config) validateCloud(c *checker) {
	if !regionRE.MatchString(cfg.AWS.Region) {
		c.add("aws.region", "%q is not an AWS region name such as us-east-1 or eu-west-2", cfg.AWS.Region)
	}
	if s := cfg.Device.Serial; s != "" && !serialRE.MatchString(s) {
		c.add("device.serial", "%q: use 1 to 128 of letters, digits, ':', '_' and '-' (it becomes the thing name)", s)
	}
	iot := cfg.IoT
	if iot.Endpoint != "" {
		if err := checkEndpoint(iot.Endpoint); err != nil {
			c.add("iot.endpoint", "%v", err)
		}
	}
	c.durRange("iot.keep_alive", iot.KeepAlive, 30*time.Second, 1200*time.Second)
	if iot.CACert != "" {
		c.fileExists("iot.ca_cert", iot.CACert)
	}

	p := cfg.Provisioning
	c.oneOf("provisioning.method", p.Method, Methods)
	c.oneOf("provisioning.key_type", p.KeyType, KeyTypes)
	if p.Enabled && iot.Endpoint != "" {
		// The claim files themselves are checked when provisioning runs: a factory may
		// remove them once the device has its own identity.
		if p.ClaimCert == "" {
			c.add("provisioning.claim_cert", "must be set to provision the device")
		}
		if p.ClaimKey == "" {
			c.add("provisioning.claim_key", "must be set to provision the device")
		}
	}
	if !templateRE.MatchString(p.Template) {
		c.add("provisioning.template", "%q: use 1 to 36 of letters, digits, '_' and '-'", p.Template)
	}
	for k := range p.Parameters {
		if k == "SerialNumber" {
			c.add("provisioning.parameters", "SerialNumber is sent by edgecam itself; set device.serial to override it")
		}
	}
	c.durRange("provisioning.timeout", p.Timeout, time.Second, 10*time.Minute)
	c.intRange("provisioning.attempts", p.Attempts, 1, 100)

	cr := cfg.Credentials
	if cr.Endpoint != "" {
		if err := checkEndpoint(cr.Endpoint); err != nil {
			c.add("credentials.endpoint", "%v", err)
		}
		if iot.Endpoint == "" {
			c.add("credentials.endpoint", "needs iot.endpoint: credentials are requested with the device certificate")
		}
	}
	if !aliasRE.MatchString(cr.RoleAlias) {
		c.add("credentials.role_alias", "%q is not a role alias name", cr.RoleAlias)
	}
	// AWS credentials live 900 s at least; refreshing later than that would let them lapse.
	c.durRange("credentials.refresh_before", cr.RefreshBefore, 10*time.Second, 10*time.Minute)
	c.durRange("telemetry.interval", cfg.Telemetry.Interval, time.Second, 24*time.Hour)

	w := cfg.WebRTC
	if w.Channel != "" && !kvsNameRE.MatchString(w.Channel) {
		c.add("webrtc.channel", "%q: use 1 to 256 of letters, digits, '_', '.' and '-'", w.Channel)
	}
	if w.ControlPlane != "" {
		if u, err := url.Parse(w.ControlPlane); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			c.add("webrtc.control_plane", "%q: write an http(s):// URL, e.g. https://kinesisvideo.eu-west-1.amazonaws.com", w.ControlPlane)
		}
	}
	if w.STUN != "" && w.STUN != "none" && !strings.HasPrefix(w.STUN, "stun:") {
		c.add("webrtc.stun", "%q: write stun:host:port, or none", w.STUN)
	}
	c.intRange("webrtc.max_viewers", w.MaxViewers, 1, 10)
	c.intRange("webrtc.udp_port", w.UDPPort, 0, 65535)
	c.intRange("webrtc.min_bitrate_kbps", w.MinBitrateKbps, 50, 50000)
	if b := cfg.Media.Encoder.BitrateKbps; b >= 50 && w.MinBitrateKbps > b { // a bad bitrate is reported once
		c.add("webrtc.min_bitrate_kbps", "%d is above media.encoder.bitrate_kbps (%d)", w.MinBitrateKbps, cfg.Media.Encoder.BitrateKbps)
	}
}

// checkEndpoint accepts host or host:port, without a scheme.
func checkEndpoint(ep string) error {
	if strings.Contains(ep, "://") {
		return fmt.Errorf("%q: write host[:port] without a scheme, e.g. abc123-ats.iot.us-east-1.amazonaws.com", ep)
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		host, port = ep, "443"
	}
	if host == "" || strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q has no valid host", ep)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be 1 to 65535", ep)
	}
	return nil
}

func (c *checker) fileExists(key, path string) {
	if _, err := os.Stat(path); err != nil {
		c.add(key, "%v", err)
	}
}

// validateMotion checks the motion section.
func (cfg *Config) validateMotion(c *checker) {
	m := cfg.Motion
	if m.Sensitivity < 0.01 || m.Sensitivity > 1 {
		c.add("motion.sensitivity", "%g is out of range; use 0.01 to 1", m.Sensitivity)
	}
	c.intRange("motion.start_frames", m.StartFrames, 1, 100)
	c.durRange("motion.pre_roll", m.PreRoll, 0, time.Minute)
	if m.PreRoll > cfg.Media.Hub.PreRoll {
		c.add("motion.pre_roll", "%s is more than media.hub.pre_roll (%s) keeps in memory; raise that or lower this", m.PreRoll, cfg.Media.Hub.PreRoll)
	}
	c.durRange("motion.post_roll", m.PostRoll, 0, 10*time.Minute)
	c.durRange("motion.event_gap", m.EventGap, 0, 10*time.Minute)
	for i, r := range m.Masks {
		if r.W <= 0 || r.H <= 0 || r.X < 0 || r.Y < 0 || r.X+r.W > 1.0001 || r.Y+r.H > 1.0001 {
			c.add(fmt.Sprintf("motion.masks[%d]", i), "{x: %g, y: %g, w: %g, h: %g} must lie inside the frame, in 0..1 coordinates with w, h > 0", r.X, r.Y, r.W, r.H)
		}
	}
	for i, poly := range m.Polygons {
		if len(poly) < 3 {
			c.add(fmt.Sprintf("motion.polygons[%d]", i), "needs at least 3 points, [x, y] in 0..1")
			continue
		}
		for j, pt := range poly {
			if len(pt) != 2 || pt[0] < 0 || pt[0] > 1 || pt[1] < 0 || pt[1] > 1 {
				c.add(fmt.Sprintf("motion.polygons[%d][%d]", i, j), "%v: write a point as [x, y] in 0..1", pt)
			}
		}
	}
	if m.IdleBitrateKbps != 0 {
		c.intRange("motion.idle_bitrate_kbps", m.IdleBitrateKbps, 50, 50000)
	}
	if m.IdleFramerate != 0 {
		c.intRange("motion.idle_framerate", m.IdleFramerate, 1, max(1, cfg.Media.Source.Framerate))
	}
}
