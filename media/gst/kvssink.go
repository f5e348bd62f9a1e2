package gst

/*
#include <stdlib.h>
#include <glib.h>
int edgecam_connect_kvssink(void *element, guintptr handle);
int edgecam_scan_plugin_dir(const char *dir);
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"time"
	"unsafe"
)

// AddPluginDir scans dir for GStreamer plugins and adds them to this process's registry
// (what GST_PLUGIN_PATH does at start-up, but at any time). It reports whether dir held
// plugins that were not known before.
func AddPluginDir(dir string) (bool, error) {
	Init()
	st, err := os.Stat(dir)
	if err != nil {
		return false, fmt.Errorf("GStreamer plugin directory: %w", err)
	}
	if !st.IsDir() {
		return false, fmt.Errorf("GStreamer plugin directory %s is not a directory", dir)
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	return C.edgecam_scan_plugin_dir(cdir) != 0, nil
}

// KVSAck is one fragment acknowledgement that kvssink received from Kinesis Video Streams.
type KVSAck struct {
	// Type is BUFFERING, RECEIVED, PERSISTED, ERROR or IDLE.
	Type string
	// Timecode is the fragment's timecode as KVS acknowledged it: the cluster timecode, its
	// first frame's time since the epoch (kvssink's timecode scale is 1 ms).
	Timecode time.Duration
	// Sequence is the fragment number KVS gave it.
	Sequence string
	// Result is the service's result code for an ERROR ack.
	Result int
}

// kvsAckTypes are PIC's FRAGMENT_ACK_TYPE values.
var kvsAckTypes = []string{"UNDEFINED", "BUFFERING", "RECEIVED", "PERSISTED", "ERROR", "IDLE"}

// KVSSinkEvents receive what a kvssink element reports through its signals. They run on
// kvssink's threads: return quickly.
type KVSSinkEvents struct {
	// Ack is called for every fragment acknowledgement.
	Ack func(KVSAck)
	// StreamError is called with the producer's status code when the stream reports an
	// error (kvssink then resets the stream itself when it can).
	StreamError func(status uint64)
}

// WatchKVSSink connects ev to the signals of the kvssink element named element.
func (p *Pipeline) WatchKVSSink(element string, ev KVSSinkEvents) error {
	e, err := p.element(element)
	if err != nil {
		return err
	}
	h := cgo.NewHandle(ev)
	if C.edgecam_connect_kvssink(unsafe.Pointer(e.Instance()), C.guintptr(h)) == 0 {
		h.Delete()
		return fmt.Errorf("pipeline %s: element %s has no fragment-ack signal: not a kvssink", p.opts.Name, element)
	}
	return nil
}

//export edgecamKVSAck
func edgecamKVSAck(handle C.guintptr, ackType C.gint32, timestamp C.guint64, seq *C.char, result C.gint32) {
	ev := cgo.Handle(handle).Value().(KVSSinkEvents)
	if ev.Ack == nil {
		return
	}
	t := "UNKNOWN"
	if int(ackType) >= 0 && int(ackType) < len(kvsAckTypes) {
		t = kvsAckTypes[ackType]
	}
	ev.Ack(KVSAck{Type: t, Timecode: time.Duration(timestamp) * time.Millisecond, Sequence: C.GoString(seq), Result: int(result)})
}

//export edgecamKVSStreamError
func edgecamKVSStreamError(handle C.guintptr, status C.guint64) {
	ev := cgo.Handle(handle).Value().(KVSSinkEvents)
	if ev.StreamError != nil {
		ev.StreamError(uint64(status))
	}
}

//export edgecamKVSRelease
func edgecamKVSRelease(handle C.guintptr) {
	cgo.Handle(handle).Delete()
}
