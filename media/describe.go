package media

import (
	"fmt"
	"strings"
	"time"

	"github.com/edgecam/edgecam/config"
)

// Element names that the rest of edgecam looks up in the pipelines it builds.
const (
	VideoSink   = "video"   // appsink delivering Annex-B access units to the Hub
	EncoderName = "encoder" // the H.264 encoder, when the agent encodes
	RecorderSrc = "src"     // appsrc of a recording pipeline
	SegmentMux  = "segments"
)

// h264Out ends every capture pipeline: one H.264 stream in Annex-B, access-unit aligned, with
// SPS/PPS before every IDR, delivered to the appsink that feeds the Hub.
const h264Out = "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! " +
	"appsink name=" + VideoSink + " max-buffers=64 drop=false"

// quote makes a value safe inside a gst-launch description.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// SourceDescription returns the gst-launch description of the capture pipeline: the source,
// an encoder when the source delivers raw video, and the appsink named VideoSink.
func SourceDescription(src config.Source, enc config.Encoder) (string, error) {
	switch src.Kind {
	case config.SourceFile:
		// parsebin finds the demuxer for MP4, Matroska or MPEG-TS; sync on the appsink plays
		// the file in real time, as a camera would deliver it.
		return "filesrc location=" + quote(src.Path) + " ! parsebin ! " + h264Out + " sync=true", nil
	case config.SourceTest:
		raw := fmt.Sprintf("videotestsrc is-live=true pattern=ball ! video/x-raw,width=%d,height=%d,framerate=%d/1 ! videoconvert", src.Width, src.Height, src.Framerate)
		e, err := EncoderDescription(enc, src.Framerate)
		if err != nil {
			return "", err
		}
		return raw + " ! " + e + " ! " + h264Out + " sync=false", nil
	}
	return "", fmt.Errorf("media.source.kind %q is not supported", src.Kind)
}

// EncoderDescription returns the encoder element for raw video at fps frames per second.
func EncoderDescription(enc config.Encoder, fps int) (string, error) {
	keyInt := max(1, int(enc.GOP.Seconds()*float64(fps)+0.5))
	switch enc.Kind {
	case config.EncoderAuto, config.EncoderX264:
		return fmt.Sprintf("x264enc name=%s tune=zerolatency speed-preset=veryfast bframes=0 key-int-max=%d bitrate=%d "+
			"! video/x-h264,profile=high", EncoderName, keyInt, enc.BitrateKbps), nil
	}
	return "", fmt.Errorf("media.encoder.kind %q is not supported", enc.Kind)
}

// SegmentDescription returns the description of a local recording pipeline: access units from
// an appsrc named RecorderSrc, split into files of segment length at keyframes.
func SegmentDescription(dir string, segment time.Duration, format string) (string, error) {
	var muxer string
	switch format {
	case config.FormatMKV:
		muxer = "matroskamux"
	case config.FormatMP4:
		muxer = "mp4mux"
	default:
		return "", fmt.Errorf("recording.local.format %q is not supported", format)
	}
	return fmt.Sprintf("appsrc name=%s format=time is-live=true do-timestamp=false "+
		"caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ! "+
		"splitmuxsink name=%s max-size-time=%d muxer-factory=%s location=%s",
		RecorderSrc, SegmentMux, segment.Nanoseconds(), muxer, quote(dir+"/segment-%05d."+format)), nil
}
