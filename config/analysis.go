package config

import (
	"net/url"
	"os"
	"strings"
)

// AnalysisDecoders are the allowed values of media.analysis.decoder.
var AnalysisDecoders = []string{DecoderAuto, DecoderSoftware, DecoderOpenH264, DecoderV4L2}

// validateAnalysisSource checks media.analysis.source: empty (the main stream), an RTSP URL,
// a video file or a V4L2 device.
func (cfg *Config) validateAnalysisSource(c *checker) {
	const key = "media.analysis.source"
	src := strings.TrimSpace(cfg.Media.Analysis.Source)
	if src == "" {
		return
	}
	const hint = "use an rtsp:// URL (a camera's low-resolution substream), a video file path, a V4L2 device such as /dev/video1, or empty to analyse the main stream"
	switch {
	case strings.HasPrefix(src, "rtsp://") || strings.HasPrefix(src, "rtsps://"):
		u, err := url.Parse(src)
		switch {
		case err != nil:
			c.add(key, "%s — %s", RedactURL(err.Error()), hint)
		case u.Host == "":
			c.add(key, "%q has no host; write e.g. rtsp://user:password@192.168.1.20:554/stream2", RedactURL(src))
		}
	case strings.HasPrefix(src, "/dev/") || strings.HasPrefix(src, "v4l2://"):
		if strings.TrimPrefix(src, "v4l2://") == "" {
			c.add(key, "%q names no device; write e.g. /dev/video1", src)
		}
	case strings.HasPrefix(src, "file://") || strings.HasPrefix(src, "/") || !strings.Contains(src, "://"):
		path := strings.TrimPrefix(src, "file://")
		switch st, err := os.Stat(path); {
		case err != nil:
			c.add(key, "%v — %s", err, hint)
		case st.IsDir():
			c.add(key, "%s is a directory; name a video file with H.264 video", path)
		}
	default:
		c.add(key, "%q is not supported: %s", RedactURL(src), hint)
	}
}
