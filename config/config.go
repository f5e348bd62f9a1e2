// Package config defines edgecam's configuration: one typed tree with defaults, loaded from a
// YAML file, EDGECAM_<SECTION>_<KEY> environment variables and command-line flags, and validated
// so that every problem is reported at once with its key path.
package config

import (
	"path/filepath"
	"time"
)

// DefaultPath is where the daemon looks for its configuration file.
const DefaultPath = "/etc/edgecam/edgecam.yaml"

// Config is the whole configuration. Its yaml tags are the key names in the file; nested
// structs are sections. Every key is documented in configs/edgecam.yaml.
type Config struct {
	// StateDir holds the device identity and other state that must survive reboots.
	StateDir     string       `yaml:"state_dir"`
	Log          Log          `yaml:"log"`
	AWS          AWS          `yaml:"aws"`
	Device       Device       `yaml:"device"`
	IoT          IoT          `yaml:"iot"`
	Provisioning Provisioning `yaml:"provisioning"`
	Credentials  Credentials  `yaml:"credentials"`
	Telemetry    Telemetry    `yaml:"telemetry"`
	WebRTC       WebRTC       `yaml:"webrtc"`
	Motion       Motion       `yaml:"motion"`
	Metrics      Metrics      `yaml:"metrics"`
	Media        Media        `yaml:"media"`
	Recording    Recording    `yaml:"recording"`
}

// AWS holds account-wide settings.
type AWS struct {
	Region string `yaml:"region"`
}

// Device describes this device.
type Device struct {
	// Serial overrides the detected serial number (sent as SerialNumber when provisioning).
	Serial string `yaml:"serial"`
}

// IoT configures the MQTT connection to AWS IoT Core. An empty endpoint runs the agent
// without the cloud: no provisioning, telemetry or credentials.
type IoT struct {
	Endpoint  string        `yaml:"endpoint"`
	CACert    string        `yaml:"ca_cert"`
	KeepAlive time.Duration `yaml:"keep_alive"`
}

// Provisioning methods and device key types (provisioning.Method*, provisioning.Key*).
const (
	MethodCSR    = "csr"
	MethodKeys   = "keys"
	KeyECDSAP256 = "ecdsa-p256"
	KeyRSA2048   = "rsa-2048"
)

// Provisioning configures fleet provisioning by claim.
type Provisioning struct {
	Enabled    bool              `yaml:"enabled"`
	ClaimCert  string            `yaml:"claim_cert"`
	ClaimKey   string            `yaml:"claim_key"`
	Template   string            `yaml:"template"`
	Method     string            `yaml:"method"`
	KeyType    string            `yaml:"key_type"`
	Parameters map[string]string `yaml:"parameters"`
	Timeout    time.Duration     `yaml:"timeout"`
	Attempts   int               `yaml:"attempts"`
}

// Credentials configures the AWS IoT credentials provider.
type Credentials struct {
	Endpoint      string        `yaml:"endpoint"`
	RoleAlias     string        `yaml:"role_alias"`
	RefreshBefore time.Duration `yaml:"refresh_before"`
	KVSSinkFile   string        `yaml:"kvssink_file"`
}

// WebRTC configures live view through KVS WebRTC signaling, the camera being the master.
type WebRTC struct {
	Enabled bool `yaml:"enabled"`
	// Channel is the signaling channel; empty: the provisioning answer's
	// signalingChannelName, else the thing name.
	Channel       string `yaml:"channel"`
	CreateChannel bool   `yaml:"create_channel"`
	// ControlPlane overrides https://kinesisvideo.<region>.amazonaws.com (localcloud).
	ControlPlane string `yaml:"control_plane"`
	// STUN overrides stun:stun.kinesisvideo.<region>.amazonaws.com:443; "none" disables it.
	STUN       string `yaml:"stun"`
	MaxViewers int    `yaml:"max_viewers"`
	// UDPPort multiplexes every viewer over one UDP port (firewalls); 0 picks ports freely.
	UDPPort int `yaml:"udp_port"`
	// Loopback offers loopback candidates, for viewers on the same machine.
	Loopback bool `yaml:"loopback"`
	// MinBitrateKbps is the lowest encoder bitrate congestion control may ask for.
	MinBitrateKbps int `yaml:"min_bitrate_kbps"`
}

// Rect is a rectangle in frame coordinates from 0 to 1 (x, y of the top-left corner).
type Rect struct {
	X float64 `yaml:"x"`
	Y float64 `yaml:"y"`
	W float64 `yaml:"w"`
	H float64 `yaml:"h"`
}

// Motion configures edge motion detection, the events it emits, and what it gates.
type Motion struct {
	Enabled bool `yaml:"enabled"`
	// Sensitivity from 0.01 (only large, strong changes) to 1 (small, faint ones).
	Sensitivity float64 `yaml:"sensitivity"`
	// StartFrames consecutive motion frames start an event.
	StartFrames int `yaml:"start_frames"`
	// PreRoll: a motion recording starts this long before the motion (from the hub's ring).
	PreRoll time.Duration `yaml:"pre_roll"`
	// PostRoll: an event lasts this long after its last motion frame.
	PostRoll time.Duration `yaml:"post_roll"`
	// EventGap merges events closer than this into one.
	EventGap time.Duration `yaml:"event_gap"`
	// Masks are ignored rectangles (a timestamp overlay, a busy road), in 0..1 coordinates.
	Masks []Rect `yaml:"masks"`
	// Polygons are ignored areas (a tree): lists of [x, y] points in 0..1 coordinates.
	Polygons [][][]float64 `yaml:"polygons"`
	// IdleBitrateKbps and IdleFramerate are the encoder's profile while nothing moves and
	// nobody watches (when the agent encodes); 0 keeps the full setting.
	IdleBitrateKbps int `yaml:"idle_bitrate_kbps"`
	IdleFramerate   int `yaml:"idle_framerate"`
}

// Metrics configures the local HTTP endpoint with /metrics (Prometheus text), /healthz and
// /readyz.
type Metrics struct {
	// Listen is host:port; empty turns the endpoint off.
	Listen string `yaml:"listen"`
	// PProf serves Go's profiler under /debug/pprof/ on the same listener.
	PProf bool `yaml:"pprof"`
}

// DefaultMetricsListen is where metrics are served unless metrics.listen says otherwise:
// loopback only (9464 is Prometheus' registered port for exporters of this kind).
const DefaultMetricsListen = "127.0.0.1:9464"

// Telemetry configures status messages over MQTT.
type Telemetry struct {
	Enabled  bool          `yaml:"enabled"`
	Interval time.Duration `yaml:"interval"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto, console, json
}

// Media configures the camera pipeline and the in-memory frame hub.
type Media struct {
	Source   Source   `yaml:"source"`
	Encoder  Encoder  `yaml:"encoder"`
	Analysis Analysis `yaml:"analysis"`
	Hub      Hub      `yaml:"hub"`
	// StallTimeout restarts the pipeline when no frame arrived for this long (stalled camera).
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// RestartBackoff is the longest wait between pipeline restarts.
	RestartBackoff time.Duration `yaml:"restart_backoff"`
}

// Source kinds.
const (
	SourceV4L2      = "v4l2"
	SourceLibcamera = "libcamera"
	SourceRTSP      = "rtsp"
	SourceFile      = "file"
	SourceTest      = "test"
	SourceCustom    = "custom"
)

// Source formats: what a v4l2 camera or a custom fragment delivers.
const (
	FormatAuto = "auto"
	FormatRaw  = "raw"
	FormatH264 = "h264"
)

// RTSP transports.
const (
	TransportAuto = "auto"
	TransportTCP  = "tcp"
	TransportUDP  = "udp"
)

// RTSP clients (media.source.rtsp_client).
const (
	RTSPClientAuto      = "auto"
	RTSPClientGo        = "go"
	RTSPClientGStreamer = "gstreamer"
)

// Source selects where video comes from.
type Source struct {
	Kind string `yaml:"kind"`
	// Device is the V4L2 device (v4l2).
	Device string `yaml:"device"`
	// Format is what a v4l2 camera is asked for (auto: H.264 when it offers it) or what a
	// custom fragment delivers (raw or h264).
	Format string `yaml:"format"`
	// Camera names a libcamera camera (libcamera); empty is the first one.
	Camera string `yaml:"camera"`
	// URL is the RTSP address, rtsp://[user:password@]host[:port]/path (rtsp). Its password
	// is redacted in logs and in config print.
	URL       string        `yaml:"url" redact:"url"`
	Transport string        `yaml:"transport"` // rtsp: auto, tcp or udp
	Latency   time.Duration `yaml:"latency"`   // rtsp: jitter buffer
	Path      string        `yaml:"path"`      // file: an MP4, Matroska or MPEG-TS file with H.264 video
	Loop      bool          `yaml:"loop"`      // file: start again at the end instead of stopping

	// RTSPClient reads an rtsp camera: go (an RTSP client in Go feeding the Hub, for H.264
	// passed through: less CPU and memory), gstreamer (rtspsrc), or auto (go when the
	// stream is passed through and motion analysis does not decode the main stream).
	RTSPClient string `yaml:"rtsp_client"`

	// Pipeline is a gst-launch fragment for the source part (custom), e.g.
	// "v4l2src device=/dev/video2 ! image/jpeg ! jpegdec".
	Pipeline  string `yaml:"pipeline"`
	Width     int    `yaml:"width"`
	Height    int    `yaml:"height"`
	Framerate int    `yaml:"framerate"`
}

// Encoder kinds.
const (
	EncoderAuto        = "auto"
	EncoderX264        = "x264"
	EncoderV4L2        = "v4l2"
	EncoderPassthrough = "passthrough"
)

// Encoder configures H.264 encoding.
type Encoder struct {
	Kind        string        `yaml:"kind"`
	BitrateKbps int           `yaml:"bitrate_kbps"`
	GOP         time.Duration `yaml:"gop"` // keyframe interval
	// X264Preset is x264's speed preset (ultrafast … medium); faster presets cost bitrate.
	X264Preset string `yaml:"x264_preset"`
}

// Analysis configures the small grey frames that motion detection reads.
type Analysis struct {
	Enabled   bool `yaml:"enabled"`
	Width     int  `yaml:"width"`
	Height    int  `yaml:"height"`
	Framerate int  `yaml:"framerate"`
	// KeyframesOnly decodes only keyframes of H.264 sources (cheaper, one frame per GOP).
	KeyframesOnly bool `yaml:"keyframes_only"`
	// Source is where analysis frames come from: empty analyses the main stream; an rtsp://
	// URL (a camera's low-resolution substream: read by the Go RTSP client unless
	// media.source.rtsp_client is gstreamer), a video file or a V4L2 device (/dev/videoN) is
	// read and decoded apart from the main stream. Its password is redacted.
	Source string `yaml:"source" redact:"url"`
	// Decoder decodes H.264 for analysis: auto (the hardware decoder when it works, else
	// software), software (avdec_h264), openh264 (libopenh264 in process for access units
	// the Go RTSP client reads, else openh264dec) or v4l2 (v4l2h264dec or
	// v4l2slh264dec).
	Decoder string `yaml:"decoder"`
}

// Analysis decoders.
const (
	DecoderAuto     = "auto"
	DecoderSoftware = "software"
	DecoderV4L2     = "v4l2"
	DecoderOpenH264 = "openh264"
)

// Hub configures the fan-out of encoded frames.
type Hub struct {
	// PreRoll is how much encoded video is kept in memory for motion recordings to start early.
	PreRoll time.Duration `yaml:"pre_roll"`
	// PreRollMaxBytes bounds the memory the pre-roll ring may use.
	PreRollMaxBytes ByteSize `yaml:"pre_roll_max_bytes"`
	// QueueFrames is each subscriber's queue length; a subscriber that falls further behind
	// skips to the next keyframe.
	QueueFrames int `yaml:"queue_frames"`
}

// Recording modes.
const (
	RecordContinuous = "continuous"
	RecordMotion     = "motion"
	RecordOff        = "off"
)

// Recording configures what is recorded and where.
type Recording struct {
	Mode  string `yaml:"mode"`
	Local Local  `yaml:"local"`
	KVS   KVS    `yaml:"kvs"`
}

// Segment formats.
const (
	FormatMKV = "mkv"
	FormatMP4 = "mp4"
)

// Local configures local segment files.
type Local struct {
	Enabled bool          `yaml:"enabled"`
	Dir     string        `yaml:"dir"` // empty: <state_dir>/recordings
	Segment time.Duration `yaml:"segment"`
	Format  string        `yaml:"format"`
	// MaxAge deletes segments older than this; 0 keeps them.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes bounds the recordings directory; the oldest segments go first. 0: no bound.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxSharePercent bounds the recordings to this share of their file system's size
	// (with max_bytes too, the smaller bound holds); 0: no share bound.
	MaxSharePercent int `yaml:"max_share_percent"`
	// MinFreeBytes keeps this much of the file system free, deleting the oldest segments and
	// pausing recording when there is nothing left to delete.
	MinFreeBytes ByteSize `yaml:"min_free_bytes"`
}

// KVS authentication methods.
const (
	KVSAuthCredentialFile = "credential_file"
	KVSAuthIoTCertificate = "iot_certificate"
)

// KVS configures recording to Kinesis Video Streams through kvssink.
type KVS struct {
	Enabled bool `yaml:"enabled"`
	// StreamName defaults to the thing name.
	StreamName       string        `yaml:"stream_name"`
	StorageSizeMB    int           `yaml:"storage_size_mb"`
	FragmentDuration time.Duration `yaml:"fragment_duration"`
	RetentionHours   int           `yaml:"retention_hours"`
	StreamingType    string        `yaml:"streaming_type"`
	Auth             string        `yaml:"auth"`
	// ControlPlaneURI points kvssink at another control plane (CONTROL_PLANE_URI).
	ControlPlaneURI string `yaml:"control_plane_uri"`
	// CACert is the CA file kvssink trusts for an https:// control plane
	// (KVSSINK_CA_CERT_PATH); empty: iot.ca_cert when control_plane_uri is https://.
	CACert string `yaml:"ca_cert"`
	// PluginDir holds libgstkvssink.so; empty: next to the binary, then GStreamer's path.
	PluginDir string `yaml:"plugin_dir"`
	// StartupTimeout bounds kvssink's wait for its first fragment acknowledgement.
	StartupTimeout time.Duration `yaml:"startup_timeout"`
	// CreateStream lets kvssink (and the agent) create the stream when it does not exist.
	CreateStream bool `yaml:"create_stream"`
	// Uploader picks what sends video to KVS: auto (kvssink when installed, else native),
	// native (edgecam's own uploader, with an on-disk spool) or kvssink.
	Uploader string `yaml:"uploader"`
	// Spool is the native uploader's on-disk spool.
	Spool KVSSpool `yaml:"spool"`
}

// KVS uploaders (recording.kvs.uploader).
const (
	KVSUploaderAuto    = "auto"
	KVSUploaderNative  = "native"
	KVSUploaderKVSSink = "kvssink"
)

// KVSSpool configures the native uploader's spool: every fragment is written here before it
// is uploaded and removed once KVS has persisted it.
type KVSSpool struct {
	// Dir holds the spool; empty: <state_dir>/kvs-spool.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the spool; the oldest fragments are dropped first (with a warning).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxAge drops fragments not uploaded within this time; 0: no age limit.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxUploadKbps bounds the upload rate (a backlog drains at most this fast); 0: KVS's limit.
	MaxUploadKbps int `yaml:"max_upload_kbps"`
}

// Default returns the configuration used for every key the user does not set.
func Default() Config {
	return Config{
		StateDir: "/var/lib/edgecam",
		Log:      Log{Level: "info", Format: "auto"},
		AWS:      AWS{Region: "us-east-1"},
		IoT:      IoT{KeepAlive: time.Minute},
		Provisioning: Provisioning{
			Enabled:    true,
			ClaimCert:  "/etc/edgecam/claim.pem",
			ClaimKey:   "/etc/edgecam/claim.key",
			Template:   "edgecam-fleet",
			Method:     MethodCSR,
			KeyType:    KeyECDSAP256,
			Parameters: map[string]string{},
			Timeout:    30 * time.Second,
			Attempts:   5,
		},
		Credentials: Credentials{RoleAlias: "edgecam-kvs", RefreshBefore: 5 * time.Minute},
		Metrics:     Metrics{Listen: DefaultMetricsListen},
		Telemetry:   Telemetry{Enabled: true, Interval: time.Minute},
		WebRTC:      WebRTC{Enabled: true, CreateChannel: true, MaxViewers: 10, MinBitrateKbps: 300},
		Motion: Motion{Enabled: true, Sensitivity: 0.5, StartFrames: 2, PreRoll: 3 * time.Second, PostRoll: 4 * time.Second,
			EventGap: 6 * time.Second, Masks: []Rect{}, Polygons: [][][]float64{}, IdleBitrateKbps: 500, IdleFramerate: 0},
		Media: Media{
			Source: Source{
				Kind: SourceTest, Device: "/dev/video0", Format: FormatAuto, Transport: TransportTCP, RTSPClient: RTSPClientAuto,
				Latency: 200 * time.Millisecond, Loop: true, Width: 1280, Height: 720, Framerate: 30,
			},
			Encoder:        Encoder{Kind: EncoderAuto, BitrateKbps: 2000, GOP: 2 * time.Second, X264Preset: "veryfast"},
			Analysis:       Analysis{Enabled: true, Width: 320, Height: 180, Framerate: 5, Decoder: DecoderAuto},
			Hub:            Hub{PreRoll: 5 * time.Second, PreRollMaxBytes: 64 * MiB, QueueFrames: 120},
			StallTimeout:   5 * time.Second,
			RestartBackoff: 30 * time.Second,
		},
		Recording: Recording{
			Mode: RecordContinuous,
			Local: Local{Enabled: true, Segment: time.Minute, Format: FormatMKV,
				MaxAge: 7 * 24 * time.Hour, MaxSharePercent: 50, MinFreeBytes: 512 * MiB},
			KVS: KVS{StorageSizeMB: 128, FragmentDuration: 2 * time.Second, RetentionHours: 24,
				StreamingType: "realtime", Auth: KVSAuthCredentialFile, StartupTimeout: 30 * time.Second, CreateStream: true,
				Uploader: KVSUploaderAuto, Spool: KVSSpool{MaxBytes: 1024 * MiB, MaxAge: 7 * 24 * time.Hour}},
		},
	}
}

// KVSSinkCredentialFile is where the kvssink credential file goes.
func (c *Config) KVSSinkCredentialFile() string {
	if c.Credentials.KVSSinkFile != "" {
		return c.Credentials.KVSSinkFile
	}
	return filepath.Join(c.StateDir, "kvssink-credentials")
}

// KVSSpoolDir is where the native KVS uploader spools fragments.
func (c *Config) KVSSpoolDir() string {
	if c.Recording.KVS.Spool.Dir != "" {
		return c.Recording.KVS.Spool.Dir
	}
	return filepath.Join(c.StateDir, "kvs-spool")
}

// RecordingsDir is where local segments go.
func (c *Config) RecordingsDir() string {
	if c.Recording.Local.Dir != "" {
		return c.Recording.Local.Dir
	}
	return filepath.Join(c.StateDir, "recordings")
}
