package gst

import (
	"fmt"
	"sort"
	"strings"

	"github.com/go-gst/go-gst/gst"
)

// Probe answers questions about this machine's GStreamer: installed elements and what
// cameras offer. It implements media.Probe.
type Probe struct{}

// HasElement reports whether an element factory is installed.
func (Probe) HasElement(name string) bool { return HasElement(name) }

// DeviceCaps opens a V4L2 device and returns the media types it offers
// ("video/x-raw", "video/x-h264", "image/jpeg", ...), sorted and without duplicates.
func (Probe) DeviceCaps(device string) ([]string, error) {
	Init()
	src, err := gst.NewElementWithProperties("v4l2src", map[string]interface{}{"device": device})
	if err != nil {
		return nil, fmt.Errorf("v4l2src: %w (install gstreamer1.0-plugins-good)", err)
	}
	defer func() { _ = src.SetState(gst.StateNull) }()
	if err := src.SetState(gst.StateReady); err != nil {
		return nil, fmt.Errorf("cannot open %s (not a capture device, busy, or no permission: add the user to the video group)", device)
	}
	pad := src.GetStaticPad("src")
	if pad == nil {
		return nil, fmt.Errorf("%s: v4l2src has no source pad", device)
	}
	caps := pad.QueryCaps(nil)
	if caps == nil {
		return nil, fmt.Errorf("%s offers no formats", device)
	}
	return mediaTypes(caps), nil
}

func mediaTypes(caps *gst.Caps) []string {
	seen := map[string]bool{}
	for i := range caps.GetSize() {
		seen[caps.GetStructureAt(i).Name()] = true
	}
	out := make([]string, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Camera is a video capture device GStreamer's device monitor sees (V4L2, libcamera).
type Camera struct {
	Name     string
	Class    string // e.g. Video/Source
	Provider string // v4l2deviceprovider, libcameraprovider, ...
	Device   string // device path, when the provider reports one
	Caps     []string
}

// Cameras lists the video sources GStreamer's device monitor finds, with their caps
// (one entry per format, size and rate, as GStreamer writes them).
func Cameras() []Camera {
	Init()
	mon := gst.NewDeviceMonitor()
	mon.AddFilter("Video/Source", gst.NewAnyCaps()) // go-gst crashes on nil caps
	if !mon.Start() {
		return nil
	}
	defer mon.Stop()
	var out []Camera
	for _, d := range mon.GetDevices() {
		c := Camera{Name: d.GetDisplayName(), Class: d.GetDeviceClass()}
		if props := d.GetProperties(); props != nil {
			for _, key := range []string{"api.v4l2.path", "device.path", "object.path"} {
				if v, err := props.GetValue(key); err == nil {
					if s, ok := v.(string); ok && c.Device == "" {
						c.Device = s
					}
				}
			}
			if v, err := props.GetValue("device.api"); err == nil {
				c.Provider, _ = v.(string)
			}
		}
		if caps := d.GetCaps(); caps != nil {
			for i := range caps.GetSize() {
				c.Caps = append(c.Caps, strings.TrimSuffix(caps.GetStructureAt(i).String(), ";"))
			}
		}
		out = append(out, c)
	}
	return out
}
