// Package devices lists the cameras edgecam can see, with their formats, sizes and frame
// rates, so that a user can write media.source. V4L2 cameras are discovered with
// pion/mediadevices (which reads raw and MJPEG modes); GStreamer's device monitor adds what
// mediadevices does not know: H.264 modes of UVC cameras and libcamera cameras.
package devices

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/edgecam/edgecam/media/gst"
	"github.com/pion/mediadevices/pkg/driver"
	"github.com/pion/mediadevices/pkg/driver/camera"
)

// Mode is one format and size a camera offers, with its frame rates.
type Mode struct {
	Format        string // I420, YUYV, MJPEG, H264, ...
	Width, Height int
	FPS           []float32
}

// Camera is a capture device.
type Camera struct {
	Kind   string // v4l2 or libcamera
	Device string // /dev/videoN, or the libcamera camera name
	Name   string
	Bus    string
	Modes  []Mode
	H264   bool   // offers H.264 (passed through without encoding)
	Err    string // why the modes could not be read
}

// List finds the cameras on this machine.
func List() []Camera {
	camera.Initialize() // rescan: cameras come and go
	var cams []Camera
	for _, d := range driver.GetManager().Query(driver.FilterVideoRecorder()) {
		cams = append(cams, describe(d))
	}
	for _, g := range gst.Cameras() {
		if i := find(cams, g.Device); i >= 0 {
			cams[i].H264 = cams[i].H264 || hasH264(g.Caps)
			continue
		}
		if strings.Contains(strings.ToLower(g.Provider+g.Name), "libcamera") || g.Device == "" {
			cams = append(cams, Camera{Kind: "libcamera", Device: g.Name, Name: g.Name, Modes: modesFromCaps(g.Caps), H264: hasH264(g.Caps)})
		}
	}
	sort.Slice(cams, func(i, j int) bool { return cams[i].Device < cams[j].Device })
	return cams
}

// describe opens a mediadevices camera driver to read its modes, and closes it.
func describe(d driver.Driver) Camera {
	info := d.Info()
	label, _, _ := strings.Cut(info.Label, camera.LabelSeparator)
	name, bus, _ := strings.Cut(info.Name, camera.LabelSeparator)
	c := Camera{Kind: "v4l2", Device: "/dev/" + label, Name: name, Bus: bus}
	if strings.HasPrefix(label, "/") {
		c.Device = label
	}
	if err := d.Open(); err != nil {
		c.Err = err.Error()
		return c
	}
	defer d.Close()
	byMode := map[string]*Mode{}
	var order []string
	for _, p := range d.Properties() {
		key := fmt.Sprintf("%s %dx%d", p.FrameFormat, p.Width, p.Height)
		m, ok := byMode[key]
		if !ok {
			m = &Mode{Format: string(p.FrameFormat), Width: p.Width, Height: p.Height}
			byMode[key] = m
			order = append(order, key)
		}
		if p.FrameRate > 0 {
			m.FPS = append(m.FPS, p.FrameRate)
		}
	}
	for _, k := range order {
		c.Modes = append(c.Modes, *byMode[k])
	}
	return c
}

func find(cams []Camera, device string) int {
	for i, c := range cams {
		if device != "" && c.Device == device {
			return i
		}
	}
	return -1
}

func hasH264(caps []string) bool {
	for _, c := range caps {
		if strings.HasPrefix(c, "video/x-h264") {
			return true
		}
	}
	return false
}

// modesFromCaps turns GStreamer caps ("video/x-raw, format=(string)NV12, width=(int)1536, …")
// into modes, keeping what is readable.
func modesFromCaps(caps []string) []Mode {
	var out []Mode
	for _, c := range caps {
		m := Mode{Format: field(c, "format")}
		if strings.HasPrefix(c, "video/x-h264") {
			m.Format = "H264"
		}
		fmt.Sscan(field(c, "width"), &m.Width)
		fmt.Sscan(field(c, "height"), &m.Height)
		if m.Width > 0 && m.Height > 0 {
			out = append(out, m)
		}
	}
	return out
}

// field reads key=(type)value from a caps string.
func field(caps, key string) string {
	i := strings.Index(caps, key+"=")
	if i < 0 {
		return ""
	}
	v := caps[i+len(key)+1:]
	if j := strings.Index(v, ")"); strings.HasPrefix(v, "(") && j > 0 {
		v = v[j+1:]
	}
	if j := strings.IndexAny(v, ",;"); j >= 0 {
		v = v[:j]
	}
	return strings.TrimSpace(v)
}

// Write prints cameras for a person, with a media.source suggestion for each.
func Write(w io.Writer, cams []Camera) {
	if len(cams) == 0 {
		fmt.Fprintln(w, "No cameras found: no V4L2 device (/dev/video*) and no libcamera camera.")
		fmt.Fprintln(w, "Check the cable or ribbon, dmesg, and that this user is in the video group;")
		fmt.Fprintln(w, "or use media.source.kind rtsp (IP cameras), file or test.")
		return
	}
	for _, c := range cams {
		title := c.Device
		if c.Name != "" && c.Name != c.Device {
			title += "  " + c.Name
		}
		if c.Bus != "" {
			title += "  (" + c.Bus + ")"
		}
		fmt.Fprintf(w, "%s camera %s\n", c.Kind, title)
		if c.Err != "" {
			fmt.Fprintf(w, "    cannot read its modes: %s\n", c.Err)
		}
		for _, m := range c.Modes {
			fmt.Fprintf(w, "    %-6s %5dx%-5d %s\n", m.Format, m.Width, m.Height, fpsList(m.FPS))
		}
		if c.H264 {
			fmt.Fprintln(w, "    H264   offered by the camera: passed through without encoding")
		}
		fmt.Fprintf(w, "    config: %s\n", c.suggestion())
	}
}

func fpsList(fps []float32) string {
	if len(fps) == 0 {
		return ""
	}
	parts := make([]string, len(fps))
	for i, f := range fps {
		parts[i] = strings.TrimSuffix(fmt.Sprintf("%.2f", f), ".00")
	}
	return "@ " + strings.Join(parts, ", ") + " fps"
}

// suggestion is a media.source for the camera, in YAML flow style.
func (c Camera) suggestion() string {
	if c.Kind == "libcamera" {
		return fmt.Sprintf("media.source: {kind: libcamera, camera: %q}", c.Device)
	}
	format := "raw"
	if c.H264 {
		format = "h264"
	}
	best := Mode{}
	for _, m := range c.Modes {
		if m.Width*m.Height > best.Width*best.Height && m.Width <= 1920 {
			best = m
		}
	}
	if best.Width == 0 {
		return fmt.Sprintf("media.source: {kind: v4l2, device: %s, format: %s}", c.Device, format)
	}
	return fmt.Sprintf("media.source: {kind: v4l2, device: %s, format: %s, width: %d, height: %d}", c.Device, format, best.Width, best.Height)
}
