package media

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/openh264"
)

// Decoder kinds of motion analysis (media.analysis.decoder).
const (
	DecodeAuto     = config.DecoderAuto
	DecodeSoftware = config.DecoderSoftware
	DecodeV4L2     = config.DecoderV4L2
	DecodeOpenH264 = config.DecoderOpenH264
)

// Decoder is the H.264 decoder analysis runs: which kind it is and its gst-launch fragment.
type Decoder struct {
	// Kind is software or v4l2.
	Kind string
	// Element is the GStreamer element (avdec_h264, v4l2h264dec, v4l2slh264dec).
	Element string
	// Reason says why it was chosen (logged and shown in the status).
	Reason string
}

// Fragment is the decoder's part of a gst-launch description. avdec_h264 runs one thread:
// analysis is background work that should not take every core from the relay, and each
// frame thread holds frames of its own (about 10 MB more RSS at 720p). Its lowres option
// does nothing for H.264 (FFmpeg's H.264 decoder has no low-resolution mode), and
// skip-frame cannot skip P-frames that later frames reference: every frame of a stream
// is decoded to get any of them (measured in the README).
func (d Decoder) Fragment() string {
	if d.Element == "" || d.Element == "avdec_h264" {
		return "avdec_h264 max-threads=1"
	}
	return d.Element
}

// hardwareDecoders are the V4L2 H.264 decoders, in order of preference: the stateful one
// (Raspberry Pi 4 and earlier, /dev/video10) and the stateless one (Rockchip, Allwinner,
// and others). GStreamer registers each only when a decoding device exists.
var hardwareDecoders = []string{"v4l2h264dec", "v4l2slh264dec"}

// DecoderChecker is implemented by probes that can try a decoder on a test picture. The
// GStreamer probe (gst.Probe) is checked with a real decode.
type DecoderChecker interface {
	DecoderWorks(element string) error
}

// ResolveDecoder picks the H.264 decoder for analysis: kind auto takes a hardware decoder
// that exists and decodes a test picture, else software; v4l2 insists on hardware.
//
// In software, auto decodes a separate low-resolution source (lowRes) with openh264dec
// when it is installed: libopenh264 is one small library, where avdec_h264 loads FFmpeg
// and every library Debian links it with (about 35 MB more RSS measured, for the same
// bit-exact pictures). avdec_h264 costs less CPU per pixel (2.3 times less at 720p):
// software picks it, and auto does for the main stream. openh264 insists on openh264dec.
// Element openh264dec stands for openh264 either way: a source whose access units come
// from a Hub (the Go RTSP client) calls libopenh264 in process when it loads
// (AnalysisSource.Decoder then says libopenh264), so with the real probe the library
// alone is enough, and no hardware decoder is looked for without a /dev/video* device:
// GStreamer need not even start.
func ResolveDecoder(kind string, probe Probe, lowRes bool) (Decoder, error) {
	_, real := probe.(gst.Probe)
	works := func(element string) error {
		if c, ok := probe.(DecoderChecker); ok {
			return c.DecoderWorks(element)
		}
		if _, ok := probe.(gst.Probe); ok {
			return CheckDecoder(element)
		}
		return nil
	}
	if kind == DecodeOpenH264 {
		if !(real && inProcessOpenH264() == nil) && !probe.HasElement("openh264dec") {
			return Decoder{}, errors.New("media.analysis.decoder openh264: openh264dec is not installed (gstreamer1.0-plugins-bad with libopenh264); use auto or software")
		}
		return Decoder{Kind: DecodeSoftware, Element: "openh264dec", Reason: "software (media.analysis.decoder openh264)"}, nil
	}
	var tried []string
	// GStreamer registers a V4L2 decoder only for a decoding device: without any
	// /dev/video*, asking it (which loads its registry, megabytes of memory that a
	// substream decoded in process would never need) is not necessary.
	if (kind == DecodeV4L2 || kind == DecodeAuto || kind == "") && (!real || videoDevicesPresent()) {
		for _, el := range hardwareDecoders {
			if !probe.HasElement(el) {
				continue
			}
			if err := works(el); err != nil {
				tried = append(tried, fmt.Sprintf("%s: %v", el, err))
				continue
			}
			return Decoder{Kind: DecodeV4L2, Element: el, Reason: "hardware decoder " + el}, nil
		}
		if kind == DecodeV4L2 {
			if len(tried) == 0 {
				return Decoder{}, errors.New("media.analysis.decoder v4l2: no V4L2 H.264 decoder here (neither v4l2h264dec nor v4l2slh264dec is registered: a Raspberry Pi 4 or earlier needs /dev/video10 and gstreamer1.0-plugins-good); use auto or software")
			}
			return Decoder{}, fmt.Errorf("media.analysis.decoder v4l2: the hardware decoder does not decode (%v); use auto or software", tried)
		}
	}
	// avdec_h264 (gstreamer1.0-libav) is a Recommends of the package: when it is missing,
	// building the pipeline names it.
	reason := "software (no hardware H.264 decoder here)"
	switch {
	case kind == DecodeSoftware:
		reason = "software (media.analysis.decoder software)"
	case len(tried) > 0:
		reason = fmt.Sprintf("software (the hardware decoder failed its test picture: %v)", tried)
	}
	if lowRes && kind != DecodeSoftware && ((real && inProcessOpenH264() == nil) || probe.HasElement("openh264dec")) {
		return Decoder{Kind: DecodeSoftware, Element: "openh264dec", Reason: reason + "; openh264 for a low-resolution substream (a fraction of avdec_h264's memory)"}, nil
	}
	return Decoder{Kind: DecodeSoftware, Element: "avdec_h264", Reason: reason}, nil
}

// inProcessOpenH264 says whether libopenh264 can be called in process (openh264.Load).
var inProcessOpenH264 = openh264.Load

// videoDevicesPresent reports whether any V4L2 device exists (/dev/video*), as a V4L2
// decoder needs one.
func videoDevicesPresent() bool {
	m, _ := filepath.Glob("/dev/video*")
	return len(m) > 0
}

// decoderCheck is two frames of 320x240 H.264 (an IDR and a P-frame), for trying a decoder.
//
//go:embed decodercheck.h264
var decoderCheck []byte

// CheckDecoder decodes a small test stream with element and reports whether it produced a
// picture within a few seconds: a hardware decoder can be registered and still fail (busy
// device, missing firmware).
func CheckDecoder(element string) error {
	f, err := os.CreateTemp("", "edgecam-decoder-check-*.h264")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(decoderCheck); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	p, err := gst.Parse(fmt.Sprintf("filesrc location=%s ! h264parse ! %s ! video/x-raw ! appsink name=out sync=false", quote(f.Name()), element),
		gst.Options{Name: "decoder-check"})
	if err != nil {
		return err
	}
	var frames atomic.Int32
	if err := p.OnSample("out", func(gst.Sample) { frames.Add(1) }); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = p.Run(ctx)
	switch {
	case frames.Load() > 0:
		return nil
	case err == nil:
		return errors.New("no picture within 5 s")
	case errors.Is(err, gst.ErrEOS):
		return errors.New("no picture decoded")
	}
	return err
}
