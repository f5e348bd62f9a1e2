package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "edgecam.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// requireProblems loads yaml and requires exactly the problems in want, in order (each a
// substring of its problem's text); it returns the load error.
func requireProblems(t *testing.T, yaml string, want []string) error {
	t.Helper()
	_, err := Load(LoadOptions{Path: writeFile(t, yaml), Required: true})
	var cerr *Error
	require.ErrorAs(t, err, &cerr)
	require.Len(t, cerr.Problems, len(want), "%v", err)
	for i, w := range want {
		require.Contains(t, cerr.Problems[i].String(), w)
	}
	return err
}

func TestDefaultsAreValid(t *testing.T) {
	cfg := Default()
	require.Empty(t, cfg.Validate())
}

func TestLoadMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	l, err := Load(LoadOptions{Path: missing})
	require.NoError(t, err, "an absent default file means defaults")
	require.Empty(t, l.File)
	require.Equal(t, Default(), l.Config)

	_, err = Load(LoadOptions{Path: missing, Required: true})
	require.ErrorContains(t, err, "does not exist")
}

func TestLoadReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // expected "key: message" prefixes, sorted by key
	}{
		{
			name: "three mistakes",
			yaml: "log:\n  level: loud\nmedia:\n  encoder:\n    bitrate_kbps: 10\n  source:\n    kindd: test\n",
			want: []string{
				"log.level: \"loud\" is not allowed; use one of debug, info, warn, error",
				"media.encoder.bitrate_kbps: 10 is out of range; use 50 to 50000",
				"media.source.kindd: unknown key (did you mean media.source.kind?)",
			},
		},
		{
			name: "wrong types",
			yaml: "media:\n  encoder:\n    gop: two seconds\n    bitrate_kbps: lots\n  hub:\n    pre_roll_max_bytes: 12 bananas\nrecording:\n  local:\n    enabled: maybe\n",
			want: []string{
				"media.encoder.bitrate_kbps: want a whole number",
				"media.encoder.gop: want a duration such as 2s",
				"media.hub.pre_roll_max_bytes: want a size such as 512MiB",
				"recording.local.enabled: want true or false",
			},
		},
		{
			name: "file source without path",
			yaml: "media:\n  source:\n    kind: file\n",
			want: []string{"media.source.path: must be set when media.source.kind is file"},
		},
		{
			name: "segment shorter than GOP",
			yaml: "media:\n  encoder:\n    gop: 5s\nrecording:\n  local:\n    segment: 3s\n",
			want: []string{"recording.local.segment: 3s is shorter than media.encoder.gop (5s)"},
		},
		{
			name: "pprof without a listener",
			yaml: "metrics:\n  listen: \"\"\n  pprof: true\n",
			want: []string{"metrics.pprof: true needs metrics.listen"},
		},
		{
			name: "metrics listener without a port",
			yaml: "metrics:\n  listen: localhost\n",
			want: []string{`metrics.listen: "localhost": write host:port, e.g. 127.0.0.1:9464`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := requireProblems(t, tt.yaml, tt.want)
			require.Contains(t, err.Error(), "problem")
		})
	}
}

func TestLoadPrecedence(t *testing.T) {
	path := writeFile(t, "log:\n  level: warn\n  format: json\nmedia:\n  hub:\n    pre_roll: 3s\n    pre_roll_max_bytes: 16MiB\n")
	t.Setenv("EDGECAM_LOG_LEVEL", "error")
	t.Setenv("EDGECAM_STATE_DIR", "/tmp/edgecam-state")
	t.Setenv("EDGECAM_MEDIA_ENCODER_GOP", "1s")

	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags.String("log-level", "info", "")
	flags.String("state-dir", "", "")
	require.NoError(t, flags.Parse([]string{"--log-level=debug"}))

	l, err := Load(LoadOptions{Path: path, Flags: map[string]*pflag.Flag{
		"log.level": flags.Lookup("log-level"),
		"state_dir": flags.Lookup("state-dir"),
	}})
	require.NoError(t, err)
	require.Equal(t, path, l.File)
	require.Equal(t, "debug", l.Log.Level, "a set flag beats env and file")
	require.Equal(t, "json", l.Log.Format, "file beats default")
	require.Equal(t, "/tmp/edgecam-state", l.StateDir, "env beats default when the flag is unset")
	require.Equal(t, time.Second, l.Media.Encoder.GOP)
	require.Equal(t, 3*time.Second, l.Media.Hub.PreRoll)
	require.Equal(t, 16*MiB, l.Media.Hub.PreRollMaxBytes)
	require.Equal(t, filepath.Join("/tmp/edgecam-state", "recordings"), l.RecordingsDir())
}

func TestUnknownEnvironmentVariable(t *testing.T) {
	t.Setenv("EDGECAM_LOG_LEVLE", "debug")
	_, err := Load(LoadOptions{Path: filepath.Join(t.TempDir(), "none.yaml")})
	require.ErrorContains(t, err, "$EDGECAM_LOG_LEVLE: environment variable sets no configuration key (did you mean EDGECAM_LOG_LEVEL?)")
}

func TestAdjustRunsBeforeValidation(t *testing.T) {
	_, err := Load(LoadOptions{Path: filepath.Join(t.TempDir(), "none.yaml"), Adjust: func(c *Config) {
		c.Media.Source.Framerate = 0
	}})
	require.ErrorContains(t, err, "media.source.framerate: 0 is out of range")
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"512", 512, false},
		{"64KiB", 64 * KiB, false},
		{"32 MiB", 32 * MiB, false},
		{"2GB", 2_000_000_000, false},
		{"1.5GiB", 3 * GiB / 2, false},
		{"10m", 10 * MiB, false},
		{"-1", 0, true},
		{"twelve", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	require.Equal(t, "64MiB", (64 * MiB).String())
	require.Equal(t, "1000", ByteSize(1000).String())
}

func TestKeysAndEnvNames(t *testing.T) {
	keys := Keys()
	require.Contains(t, keys, "media.source.kind")
	require.Contains(t, keys, "state_dir")
	require.Equal(t, "EDGECAM_MEDIA_HUB_PRE_ROLL", EnvName("media.hub.pre_roll"))
	require.Equal(t, "EDGECAM_STATE_DIR", EnvName("state_dir"))
}

func TestYAMLRoundTrips(t *testing.T) {
	cfg := Default()
	cfg.Media.Hub.PreRollMaxBytes = 48 * MiB
	cfg.Media.Encoder.GOP = 1500 * time.Millisecond
	out, err := cfg.YAML()
	require.NoError(t, err)
	require.Contains(t, string(out), "pre_roll_max_bytes: 48MiB")
	require.Contains(t, string(out), "gop: 1.5s")

	// What config print shows is a valid config file that loads to the same configuration.
	l, err := Load(LoadOptions{Path: writeFile(t, string(out)), Required: true})
	require.NoError(t, err)
	require.Equal(t, cfg, l.Config)
}

// TestExampleConfigDocumentsEveryKey keeps configs/edgecam.yaml true: it loads without
// problems, holds every key with its default value, and comments each one.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	path := filepath.Join("..", "configs", "edgecam.yaml")
	l, err := Load(LoadOptions{Path: path, Required: true})
	require.NoError(t, err)
	require.Equal(t, Default(), l.Config, "the example shows the defaults")

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(string(data), "\n")
	// Full dotted path of every key line, from the indentation.
	type keyLine struct {
		path string
		line int
	}
	var found []keyLine
	var stack []struct {
		indent int
		name   string
	}
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || !strings.Contains(trimmed, ":") {
			continue
		}
		name, _, _ := strings.Cut(trimmed, ":")
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent(line) {
			stack = stack[:len(stack)-1]
		}
		parts := []string{}
		for _, s := range stack {
			parts = append(parts, s.name)
		}
		found = append(found, keyLine{strings.Join(append(parts, name), "."), i})
		stack = append(stack, struct {
			indent int
			name   string
		}{indent(line), name})
	}
	for _, key := range Keys() {
		idx := -1
		for _, f := range found {
			if f.path == key {
				idx = f.line
			}
		}
		require.GreaterOrEqual(t, idx, 0, "%s is not in %s", key, path)
		// A comment may cover a group of keys written together (width, height, ...).
		j := idx - 1
		for j > 0 && strings.Contains(lines[j], ":") && !strings.HasPrefix(strings.TrimSpace(lines[j]), "#") &&
			indent(lines[j]) == indent(lines[idx]) {
			j--
		}
		require.True(t, j >= 0 && strings.HasPrefix(strings.TrimSpace(lines[j]), "#"),
			"%s has no comment above it in %s", key, path)
	}
}

func indent(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }

func TestCloudValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"endpoint with scheme", "iot:\n  endpoint: mqtts://abc-ats.iot.us-east-1.amazonaws.com\n",
			[]string{"iot.endpoint: \"mqtts://abc-ats.iot.us-east-1.amazonaws.com\": write host[:port] without a scheme"}},
		{"keep-alive outside AWS limits", "iot:\n  keep_alive: 10s\n", []string{"iot.keep_alive: 10s is out of range; use 30s to 20m0s"}},
		{"bad region and serial", "aws:\n  region: mars\ndevice:\n  serial: has space\n",
			[]string{"aws.region: \"mars\" is not an AWS region", "device.serial: \"has space\""}},
		{"SerialNumber parameter", "provisioning:\n  parameters:\n    SerialNumber: x\n", []string{"provisioning.parameters: SerialNumber is sent by edgecam itself"}},
		{"credentials without iot", "credentials:\n  endpoint: c2.credentials.iot.us-east-1.amazonaws.com\n", []string{"credentials.endpoint: needs iot.endpoint"}},
		{"bad method and key type", "provisioning:\n  method: magic\n  key_type: dsa\n", []string{"provisioning.key_type: \"dsa\"", "provisioning.method: \"magic\""}},
		{"claim paths required with an endpoint", "iot:\n  endpoint: abc-ats.iot.us-east-1.amazonaws.com\nprovisioning:\n  claim_cert: \"\"\n",
			[]string{"provisioning.claim_cert: must be set to provision the device"}},
		{"missing CA file", "iot:\n  ca_cert: /nonexistent/AmazonRootCA1.pem\n", []string{"iot.ca_cert: stat /nonexistent/AmazonRootCA1.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireProblems(t, tt.yaml, tt.want)
		})
	}
	l, err := Load(LoadOptions{Path: writeFile(t, "iot:\n  endpoint: abc-ats.iot.eu-west-2.amazonaws.com:443\nprovisioning:\n  parameters:\n    Location: lab\n"), Required: true})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"Location": "lab"}, l.Provisioning.Parameters)
}

func TestMediaValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"rtsp without URL", "media:\n  source:\n    kind: rtsp\n", []string{"media.source.url: must be set when media.source.kind is rtsp"}},
		{"rtsp with an http URL, password hidden", "media:\n  source:\n    kind: rtsp\n    url: http://admin:hunter2@cam/live\n", []string{`media.source.url: "http://admin:***@cam/live": use an rtsp:// or rtsps:// URL`}},
		{"custom without fragment or format", "media:\n  source:\n    kind: custom\n", []string{"media.source.format: must be raw or h264", "media.source.pipeline: must be set"}},
		{"passthrough of a raw source", "media:\n  source:\n    kind: test\n  encoder:\n    kind: passthrough\n", []string{"media.encoder.kind: passthrough needs a source that delivers H.264"}},
		{"kvs without the cloud", "recording:\n  kvs:\n    enabled: true\n", []string{"recording.kvs.enabled: needs the device identity"}},
		{"bad kvs values", "recording:\n  kvs:\n    streaming_type: live\n    fragment_duration: 20s\n", []string{"recording.kvs.fragment_duration: 20s is out of range", `recording.kvs.streaming_type: "live" is not allowed`}},
		{"bad native uploader values", "media:\n  encoder:\n    bitrate_kbps: 2000\nrecording:\n  kvs:\n    uploader: sdk\n    spool:\n      max_bytes: 1MiB\n      max_upload_kbps: 1500\n",
			[]string{"recording.kvs.spool.max_bytes: 1MiB is too small", "recording.kvs.spool.max_upload_kbps: 1500 is not above media.encoder.bitrate_kbps (2000)", `recording.kvs.uploader: "sdk" is not allowed`}},
		{"tiny local bounds", "recording:\n  local:\n    max_age: 10s\n    max_bytes: 1MiB\n", []string{"recording.local.max_age: 10s is too short", "recording.local.max_bytes: 1MiB is too small"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := requireProblems(t, tt.yaml, tt.want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestPrintRedactsURLPasswords(t *testing.T) {
	cfg := Default()
	cfg.Media.Source.Kind = SourceRTSP
	cfg.Media.Source.URL = "rtsp://admin:hunter2@10.0.0.5:554/live"
	out, err := cfg.YAML()
	require.NoError(t, err)
	require.Contains(t, string(out), "url: rtsp://admin:***@10.0.0.5:554/live")
	require.NotContains(t, string(out), "hunter2")
	require.Equal(t, "rtsp://u:***@h/p and rtsps://x:***@y", RedactURL("rtsp://u:p@h/p and rtsps://x:y@y"))
}
