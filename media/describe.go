package media

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/edgecam/edgecam/config"
)

// Element names that the rest of edgecam looks up in the pipelines it builds.
const (
	VideoSink    = "video"    // appsink delivering Annex-B access units to the Hub
	AnalysisSink = "analysis" // appsink delivering small GRAY8 frames for motion detection
	EncoderName  = "encoder"  // the H.264 encoder, when the agent encodes
	RateCaps     = "ratecaps" // capsfilter fixing the encoded frame rate
	RecorderSrc  = "src"      // appsrc of a recording pipeline
	SegmentMux   = "segments"
	KVSSinkName  = "kvs"
)

// Encoders a plan can resolve to.
const (
	EncodeX264        = config.EncoderX264
	EncodeV4L2        = config.EncoderV4L2
	EncodePassthrough = config.EncoderPassthrough
)

// Probe answers the questions that resolve "auto" settings on this machine. media/gst
// implements it with GStreamer's registry and device caps.
type Probe interface {
	// HasElement reports whether a GStreamer element is installed.
	HasElement(name string) bool
	// DeviceCaps returns the caps a V4L2 device offers (one media type per entry, e.g.
	// "video/x-raw", "video/x-h264", "image/jpeg").
	DeviceCaps(device string) ([]string, error)
}

// Plan is a capture pipeline with every "auto" resolved: what the source delivers and
// which encoder (if any) runs.
type Plan struct {
	Source   config.Source
	Encoder  config.Encoder
	Analysis config.Analysis
	// Raw is true when the source delivers raw video.
	Raw bool
	// Encode is x264, v4l2 or passthrough.
	Encode string
	// Offline runs a file as fast as it decodes and analyses every frame: no clock sync, and
	// the analysis branch neither leaks nor drops (edgecam motion eval).
	Offline bool
	// Decoder decodes H.264 for analysis (the main stream's or media.analysis.source's).
	Decoder Decoder
}

// AnalyseMain reports whether analysis frames come from the capture pipeline itself (no
// separate media.analysis.source).
func (p Plan) AnalyseMain() bool {
	return p.Analysis.Enabled && p.Analysis.Source == ""
}

// hardwareEncoderDevice is the Raspberry Pi's stateful H.264 encoder.
const hardwareEncoderDevice = "/dev/video11"

// ResolvePlan settles the source format and the encoder for this machine. Errors say what
// is missing and how to fix it.
func ResolvePlan(m config.Media, probe Probe) (Plan, error) {
	p := Plan{Source: m.Source, Encoder: m.Encoder, Analysis: m.Analysis}
	src := m.Source
	switch src.Kind {
	case config.SourceTest, config.SourceLibcamera:
		p.Raw = true
	case config.SourceRTSP, config.SourceFile:
		p.Raw = false
	case config.SourceCustom:
		p.Raw = src.Format == config.FormatRaw
	case config.SourceV4L2:
		if _, err := os.Stat(src.Device); err != nil {
			return p, fmt.Errorf("camera %s: %w — check media.source.device (edgecam devices lists the cameras)", src.Device, err)
		}
		switch src.Format {
		case config.FormatRaw:
			p.Raw = true
		case config.FormatH264:
			p.Raw = false
		default:
			caps, err := probe.DeviceCaps(src.Device)
			if err != nil {
				return p, fmt.Errorf("camera %s: %w — check media.source.device, or set media.source.format", src.Device, err)
			}
			p.Raw = !slices.Contains(caps, "video/x-h264")
		}
	default:
		return p, fmt.Errorf("media.source.kind %q is not supported", src.Kind)
	}

	switch m.Encoder.Kind {
	case config.EncoderPassthrough:
		if p.Raw {
			return p, errors.New("media.encoder.kind passthrough: this source delivers raw video; use auto, x264 or v4l2")
		}
		p.Encode = EncodePassthrough
	case config.EncoderX264, config.EncoderV4L2:
		p.Encode = m.Encoder.Kind
	default: // auto
		switch {
		case !p.Raw:
			p.Encode = EncodePassthrough
		case probe.HasElement("v4l2h264enc") && fileExists(hardwareEncoderDevice):
			p.Encode = EncodeV4L2
		default:
			p.Encode = EncodeX264
		}
	}
	if p.Raw && src.Kind == config.SourceLibcamera && !probe.HasElement("libcamerasrc") {
		return p, errors.New("libcamerasrc is not installed: install gstreamer1.0-libcamera (Raspberry Pi OS) or use media.source.kind v4l2")
	}
	if p.needsDecoder() {
		d, err := ResolveDecoder(m.Analysis.Decoder, probe, m.Analysis.Source != "")
		if err != nil {
			return p, err
		}
		p.Decoder = d
	}
	return p, nil
}

// needsDecoder reports whether analysis decodes H.264: the main stream's, or a separate
// source's that is not a raw V4L2 device.
func (p Plan) needsDecoder() bool {
	if !p.Analysis.Enabled {
		return false
	}
	if p.Analysis.Source == "" {
		return !p.Raw
	}
	return analysisSourceKind(p.Analysis.Source) != analysisDevice
}

// h264Parse makes one H.264 stream in Annex-B, access-unit aligned, with SPS/PPS before
// every IDR.
const h264Parse = "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au"

// h264Out ends the main branch: the parsed stream into the appsink that feeds the Hub.
const h264Out = h264Parse + " ! appsink name=" + VideoSink + " max-buffers=64 drop=false"

// quote makes a value safe inside a gst-launch description.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Description returns the gst-launch description of the capture pipeline: the source, a
// tee, the main branch (encoder when needed, then the VideoSink appsink) and, when analysis
// is on, a branch of small GRAY8 frames into the AnalysisSink appsink.
func (p Plan) Description() (string, error) {
	src, err := p.sourcePart()
	if err != nil {
		return "", err
	}
	// File playback is paced by the main sink's clock, like a camera; live sources are not.
	sync := "sync=false"
	if p.Source.Kind == config.SourceFile && !p.Offline {
		sync = "sync=true"
	}
	var b strings.Builder
	b.WriteString(src)
	if p.Raw {
		enc, err := p.encoderPart()
		if err != nil {
			return "", err
		}
		if !p.AnalyseMain() {
			// No second branch: no tee, no queue, one thread less.
			b.WriteString(" ! " + enc + " ! " + h264Out + " " + sync)
			return b.String(), nil
		}
		b.WriteString(" ! tee name=raw allow-not-linked=true raw. ! queue max-size-buffers=4 max-size-bytes=0 max-size-time=0 ! ")
		b.WriteString(enc + " ! " + h264Out + " " + sync)
		b.WriteString(" raw. ! " + p.analysisPart(false, sync))
		return b.String(), nil
	}
	// H.264 sources: parse, then either pass through or decode and encode again.
	parse := " ! " + h264Parse
	main := h264Out + " " + sync
	if p.Encode != EncodePassthrough {
		enc, err := p.encoderPart()
		if err != nil {
			return "", err
		}
		main = "avdec_h264 ! videoconvert ! " + enc + " ! " + h264Out + " " + sync
	}
	if !p.AnalyseMain() {
		if p.Encode == EncodePassthrough {
			b.WriteString(" ! " + main) // h264Out parses already
		} else {
			b.WriteString(parse + " ! " + main)
		}
		return b.String(), nil
	}
	b.WriteString(parse + " ! tee name=h264 allow-not-linked=true")
	b.WriteString(" h264. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! " + main)
	b.WriteString(" h264. ! " + p.analysisPart(true, sync))
	return b.String(), nil
}

// sourcePart is the description up to the source's raw video or H.264 elementary stream.
func (p Plan) sourcePart() (string, error) {
	s := p.Source
	rawCaps := fmt.Sprintf("video/x-raw,width=%d,height=%d,framerate=%d/1", s.Width, s.Height, s.Framerate)
	switch s.Kind {
	case config.SourceTest:
		return "videotestsrc is-live=true pattern=ball ! " + rawCaps, nil
	case config.SourceFile:
		// parsebin finds the demuxer for MP4, Matroska or MPEG-TS.
		return "filesrc location=" + quote(s.Path) + " ! parsebin", nil
	case config.SourceRTSP:
		protocols := map[string]string{config.TransportTCP: "tcp", config.TransportUDP: "udp+udp-mcast", config.TransportAuto: "tcp+udp+udp-mcast"}[s.Transport]
		if protocols == "" {
			protocols = "tcp"
		}
		return fmt.Sprintf("rtspsrc location=%s protocols=%s latency=%d drop-on-latency=true tcp-timeout=5000000 ! rtph264depay",
			quote(s.URL), protocols, s.Latency.Milliseconds()), nil
	case config.SourceV4L2:
		if p.Raw {
			return fmt.Sprintf("v4l2src device=%s io-mode=auto ! %s", quote(s.Device), rawCaps), nil
		}
		return fmt.Sprintf("v4l2src device=%s ! video/x-h264,width=%d,height=%d,framerate=%d/1",
			quote(s.Device), s.Width, s.Height, s.Framerate), nil
	case config.SourceLibcamera:
		cam := ""
		if s.Camera != "" {
			cam = " camera-name=" + quote(s.Camera)
		}
		return "libcamerasrc" + cam + " ! " + rawCaps, nil
	case config.SourceCustom:
		return strings.TrimSpace(s.Pipeline), nil
	}
	return "", fmt.Errorf("media.source.kind %q is not supported", s.Kind)
}

// keyInt is the GOP in frames at the configured frame rate.
func (p Plan) keyInt() int {
	return max(1, int(p.Encoder.GOP.Seconds()*float64(p.Source.Framerate)+0.5))
}

// encoderPart converts raw video (at the configured rate, which RateCaps can change at run
// time) into H.264 with a fixed GOP and no B-frames.
func (p Plan) encoderPart() (string, error) {
	fps, keyInt := p.Source.Framerate, p.keyInt()
	rate := fmt.Sprintf("videorate drop-only=true ! capsfilter name=%s caps=video/x-raw,framerate=%d/1", RateCaps, fps)
	switch p.Encode {
	case EncodeX264:
		return fmt.Sprintf("%s ! videoconvert ! x264enc name=%s tune=zerolatency speed-preset=%s bframes=0 key-int-max=%d bitrate=%d "+
			"! video/x-h264,profile=high", rate, EncoderName, p.Encoder.X264Preset, keyInt, p.Encoder.BitrateKbps), nil
	case EncodeV4L2:
		// The Pi's encoder wants I420/NV12 and an explicit level; repeat_sequence_header puts
		// SPS/PPS in-band, h264_i_frame_period fixes the GOP.
		return fmt.Sprintf("%s ! videoconvert ! video/x-raw,format=I420 ! v4l2h264enc name=%s extra-controls=%s ! video/x-h264,level=(string)4",
			rate, EncoderName, quote(V4L2Controls(p.Encoder.BitrateKbps, keyInt))), nil
	}
	return "", fmt.Errorf("encoder %q cannot encode raw video", p.Encode)
}

// V4L2Controls is v4l2h264enc's extra-controls structure for a bitrate and GOP.
func V4L2Controls(kbps, keyInt int) string {
	return fmt.Sprintf("controls,repeat_sequence_header=1,video_bitrate=%d,h264_i_frame_period=%d", kbps*1000, keyInt)
}

// analysisPart scales video down to small GRAY8 frames for motion detection. Its queue
// leaks, so that a slow consumer never holds up the main branch. It syncs like the main
// branch: a file's analysis frames must not run ahead of its access units, or motion times
// would not match the hub's.
func (p Plan) analysisPart(fromH264 bool, sync string) string {
	a := p.Analysis
	leaky, drop := "leaky=downstream", "drop=true"
	if p.Offline {
		leaky, drop = "leaky=no", "drop=false"
	}
	var b strings.Builder
	// The analysis queue holds more than the main branch's, so that it only ever leaks
	// when analysis cannot keep up, never because the main branch runs ahead (files).
	if fromH264 {
		b.WriteString("queue " + leaky + " max-size-buffers=0 max-size-bytes=0 max-size-time=4000000000 ! ")
		if a.KeyframesOnly {
			b.WriteString("identity drop-buffer-flags=delta-unit ! ")
		}
		b.WriteString(p.Decoder.Fragment() + " ! ")
	} else {
		b.WriteString("queue " + leaky + " max-size-buffers=6 max-size-bytes=0 max-size-time=0 ! ")
	}
	fmt.Fprintf(&b, "videorate drop-only=true max-rate=%d ! videoscale ! videoconvert ! video/x-raw,format=GRAY8,width=%d,height=%d,pixel-aspect-ratio=1/1 ! "+
		"appsink name=%s %s max-buffers=1 %s", a.Framerate, a.Width, a.Height, AnalysisSink, sync, drop)
	return b.String()
}

// SegmentDescription returns the description of a local recording pipeline: access units from
// an appsrc named RecorderSrc, split into files of segment length at keyframes.
func SegmentDescription(dir string, segment time.Duration, format string) (string, error) {
	var muxer string
	switch format {
	case config.FormatMKV:
		// Matroska is written front to back: a file cut short plays up to its last cluster.
		muxer = "muxer-factory=matroskamux"
	case config.FormatMP4:
		// Fragmented MP4 (moov first, then a moof+mdat fragment every second): a file cut
		// short plays up to its last complete fragment, where a plain MP4 has no moov and
		// does not play at all.
		muxer = fmt.Sprintf(`muxer-factory=mp4mux muxer-properties="properties,fragment-duration=(uint)%d"`, mp4FragmentMillis)
	default:
		return "", fmt.Errorf("recording.local.format %q is not supported: use mkv or mp4", format)
	}
	// splitmuxsink applies muxer- and sink-properties only with async-finalize. The file
	// sink writes each buffer through (no 64 KiB of user-space buffer that a crash loses).
	return fmt.Sprintf("%s ! h264parse ! splitmuxsink name=%s max-size-time=%d async-finalize=true %s "+
		`sink-factory=filesink sink-properties="properties,buffer-mode=(int)2" location=%s`,
		appsrcH264, SegmentMux, segment.Nanoseconds(), muxer, quote(dir+"/segment-%05d."+format)), nil
}

// RecorderQueueBytes bounds what a recording pipeline's appsrc holds (about 4 s at 2 Mbit/s).
// Once it is full, Push blocks: the recorder's hub subscription backs up instead, and the
// hub's policy for a subscriber that falls behind (drop to the next keyframe, counted)
// bounds the rest. A stalled card or sink never grows memory.
const RecorderQueueBytes = 1 << 20

// mp4FragmentMillis is the length of an MP4 segment's fragments: what a power cut may lose.
const mp4FragmentMillis = 1000

// appsrcH264 feeds a recording pipeline from the Hub.
var appsrcH264 = "appsrc name=" + RecorderSrc + " format=time is-live=true do-timestamp=false " +
	"block=true max-bytes=" + fmt.Sprint(RecorderQueueBytes) + " caps=video/x-h264,stream-format=byte-stream,alignment=au"

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
