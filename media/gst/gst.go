// Package gst runs GStreamer pipelines for edgecam. It is the only package that imports
// go-gst (cgo); its API speaks in Go types (byte slices, durations, strings), never in
// GStreamer objects, so the rest of edgecam builds and tests without knowing GStreamer.
package gst

/*
#cgo pkg-config: gstreamer-1.0
#include <stdlib.h>
#include <gst/gst.h>

static void edgecam_set_arg(void *obj, const char *name, const char *value) {
	gst_util_set_object_arg(G_OBJECT(obj), name, value);
}

static void edgecam_set_dts(void *buf, GstClockTime dts) {
	GST_BUFFER_DTS((GstBuffer *)buf) = dts;
}

static int edgecam_has_property(void *obj, const char *name) {
	return g_object_class_find_property(G_OBJECT_GET_CLASS(obj), name) != NULL;
}
*/
import "C"

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/go-gst/go-gst/gst"
)

// initOnce guards gst_init: GStreamer is process-global and may be initialised only once.
var initOnce sync.Once

// Init initialises GStreamer. Every function of this package calls it; calling it again is free.
func Init() {
	initOnce.Do(func() { gst.Init(nil) })
}

// Version returns the GStreamer runtime version, e.g. "GStreamer 1.22.0".
func Version() string {
	Init()
	cs := C.gst_version_string()
	defer C.g_free(C.gpointer(cs))
	return C.GoString(cs)
}

// HasElement reports whether an element factory is installed (e.g. "kvssink", "x264enc").
func HasElement(name string) bool {
	Init()
	f := gst.Find(name)
	return f != nil
}

// packageOf names the Debian package that ships common elements, for error messages.
var packageOf = map[string]string{
	"x264enc": "gstreamer1.0-plugins-ugly", "avdec_h264": "gstreamer1.0-libav",
	"h264parse": "gstreamer1.0-plugins-bad", "splitmuxsink": "gstreamer1.0-plugins-good",
	"matroskamux": "gstreamer1.0-plugins-good", "mp4mux": "gstreamer1.0-plugins-good",
	"qtdemux": "gstreamer1.0-plugins-good", "rtspsrc": "gstreamer1.0-plugins-good",
	"v4l2src": "gstreamer1.0-plugins-good", "v4l2h264enc": "gstreamer1.0-plugins-good",
	"videotestsrc": "gstreamer1.0-plugins-base", "appsrc": "gstreamer1.0-plugins-base",
	"appsink": "gstreamer1.0-plugins-base", "parsebin": "gstreamer1.0-plugins-base",
	"videoscale": "gstreamer1.0-plugins-base", "videoconvert": "gstreamer1.0-plugins-base",
	"libcamerasrc": "gstreamer1.0-libcamera", "kvssink": "the KVS producer SDK (see README)",
}

// MissingElements returns an error naming every element that is not installed and where
// to get it, or nil when all are present.
func MissingElements(names ...string) error {
	var missing []string
	for _, n := range names {
		if !HasElement(n) {
			if pkg, ok := packageOf[n]; ok {
				n += " (" + pkg + ")"
			}
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	return fmt.Errorf("GStreamer elements not installed: %s; run scripts/install-deps.sh", strings.Join(missing, ", "))
}

// setDTS sets a buffer's decoding timestamp, which go-gst does not expose.
func setDTS(buf *gst.Buffer, dts gst.ClockTime) {
	C.edgecam_set_dts(unsafe.Pointer(buf.Instance()), C.GstClockTime(dts))
}

// setArg sets a property from its string form, the way gst-launch does, so that any
// property type works (uint, enum, flags, GstStructure) without matching Go types.
func setArg(obj unsafe.Pointer, name, value string) error {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	if C.edgecam_has_property(obj, cname) == 0 {
		return fmt.Errorf("no property %q", name)
	}
	cvalue := C.CString(value)
	defer C.free(unsafe.Pointer(cvalue))
	C.edgecam_set_arg(obj, cname, cvalue)
	return nil
}
