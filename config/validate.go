package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Allowed values of the enumerated keys.
var (
	LogLevels      = []string{"debug", "info", "warn", "error"}
	LogFormats     = []string{"auto", "console", "json"}
	SourceKinds    = []string{SourceFile, SourceTest}
	EncoderKinds   = []string{EncoderAuto, EncoderX264}
	RecordModes    = []string{RecordContinuous, RecordOff}
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

	src := cfg.Media.Source
	c.oneOf("media.source.kind", src.Kind, SourceKinds)
	if src.Kind == SourceFile {
		switch st, err := os.Stat(src.Path); {
		case src.Path == "":
			c.add("media.source.path", "must be set when media.source.kind is file; name an MP4, Matroska or MPEG-TS file with H.264 video")
		case err != nil:
			c.add("media.source.path", "%v", err)
		case st.IsDir():
			c.add("media.source.path", "%s is a directory; name a video file", src.Path)
		}
	}
	c.intRange("media.source.width", src.Width, 16, 7680)
	c.intRange("media.source.height", src.Height, 16, 4320)
	if src.Width%2 != 0 || src.Height%2 != 0 {
		c.add("media.source.width", "%dx%d: width and height must be even for 4:2:0 video", src.Width, src.Height)
	}
	c.intRange("media.source.framerate", src.Framerate, 1, 120)

	enc := cfg.Media.Encoder
	c.oneOf("media.encoder.kind", enc.Kind, EncoderKinds)
	c.intRange("media.encoder.bitrate_kbps", enc.BitrateKbps, 50, 50000)
	// Kinesis Video Streams rejects fragments longer than 10 s; a fragment starts at a keyframe.
	c.durRange("media.encoder.gop", enc.GOP, 200*time.Millisecond, 10*time.Second)

	hub := cfg.Media.Hub
	c.durRange("media.hub.pre_roll", hub.PreRoll, 0, time.Minute)
	if hub.PreRollMaxBytes < MiB || hub.PreRollMaxBytes > GiB {
		c.add("media.hub.pre_roll_max_bytes", "%s is out of range; use 1MiB to 1GiB", hub.PreRollMaxBytes)
	}
	c.intRange("media.hub.queue_frames", hub.QueueFrames, 8, 10000)

	rec := cfg.Recording
	c.oneOf("recording.mode", rec.Mode, RecordModes)
	c.oneOf("recording.local.format", rec.Local.Format, SegmentFormats)
	c.durRange("recording.local.segment", rec.Local.Segment, 2*time.Second, time.Hour)
	if rec.Local.Segment < enc.GOP {
		c.add("recording.local.segment", "%s is shorter than media.encoder.gop (%s); segments split at keyframes", rec.Local.Segment, enc.GOP)
	}
	return c.ps
}
