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

// Provisioning methods.
const (
	MethodCSR  = "csr"
	MethodKeys = "keys"
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
	Source  Source  `yaml:"source"`
	Encoder Encoder `yaml:"encoder"`
	Hub     Hub     `yaml:"hub"`
}

// Source kinds.
const (
	SourceFile = "file"
	SourceTest = "test"
)

// Source selects where video comes from.
type Source struct {
	Kind      string `yaml:"kind"`
	Path      string `yaml:"path"` // file: an MP4, Matroska or MPEG-TS file with H.264 video
	Loop      bool   `yaml:"loop"` // file: start again at the end instead of stopping
	Width     int    `yaml:"width"`
	Height    int    `yaml:"height"`
	Framerate int    `yaml:"framerate"`
}

// Encoder kinds.
const (
	EncoderAuto = "auto"
	EncoderX264 = "x264"
)

// Encoder configures H.264 encoding for sources that deliver raw video.
type Encoder struct {
	Kind        string        `yaml:"kind"`
	BitrateKbps int           `yaml:"bitrate_kbps"`
	GOP         time.Duration `yaml:"gop"` // keyframe interval
}

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
	RecordOff        = "off"
)

// Recording configures what is recorded and where.
type Recording struct {
	Mode  string `yaml:"mode"`
	Local Local  `yaml:"local"`
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
			KeyType:    "ecdsa-p256",
			Parameters: map[string]string{},
			Timeout:    30 * time.Second,
			Attempts:   5,
		},
		Credentials: Credentials{RoleAlias: "edgecam-kvs", RefreshBefore: 5 * time.Minute},
		Telemetry:   Telemetry{Enabled: true, Interval: time.Minute},
		Media: Media{
			Source:  Source{Kind: SourceTest, Loop: true, Width: 1280, Height: 720, Framerate: 30},
			Encoder: Encoder{Kind: EncoderAuto, BitrateKbps: 2000, GOP: 2 * time.Second},
			Hub:     Hub{PreRoll: 5 * time.Second, PreRollMaxBytes: 64 * MiB, QueueFrames: 120},
		},
		Recording: Recording{
			Mode:  RecordContinuous,
			Local: Local{Enabled: true, Segment: time.Minute, Format: FormatMKV},
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

// RecordingsDir is where local segments go.
func (c *Config) RecordingsDir() string {
	if c.Recording.Local.Dir != "" {
		return c.Recording.Local.Dir
	}
	return filepath.Join(c.StateDir, "recordings")
}
