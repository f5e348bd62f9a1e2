// Signal trampolines for kvssink (see kvssink.go): the element emits fragment-ack with a
// pointer to the producer's FragmentAck and stream-error with a status code.
#include <gst/gst.h>
#include "_cgo_export.h"

// edgecam_fragment_ack mirrors PIC v1.2.0's struct __FragmentAck
// (src/client/include/com/amazonaws/kinesis/video/client/Include.h).
typedef struct {
	guint32 version;
	gint32 ack_type;
	guint64 timestamp; // the cluster timecode (ms)
	gchar sequence_number[128 + 1];
	gint32 result;
} edgecam_fragment_ack;

static void edgecam_on_fragment_ack(GstElement *sink, gpointer ack, gpointer data) {
	(void)sink;
	const edgecam_fragment_ack *a = ack;
	if (a == NULL) {
		return;
	}
	edgecamKVSAck((guintptr)data, a->ack_type, a->timestamp, (char *)a->sequence_number, a->result);
}

static void edgecam_on_stream_error(GstElement *sink, guint64 status, gpointer data) {
	(void)sink;
	edgecamKVSStreamError((guintptr)data, status);
}

static void edgecam_release_handle(gpointer data, GClosure *closure) {
	(void)closure;
	edgecamKVSRelease((guintptr)data);
}

int edgecam_connect_kvssink(void *element, guintptr handle) {
	if (g_signal_lookup("fragment-ack", G_OBJECT_TYPE(element)) == 0 ||
	    g_signal_lookup("stream-error", G_OBJECT_TYPE(element)) == 0) {
		return 0;
	}
	g_signal_connect_data(element, "fragment-ack", G_CALLBACK(edgecam_on_fragment_ack), (gpointer)handle, edgecam_release_handle, 0);
	g_signal_connect_data(element, "stream-error", G_CALLBACK(edgecam_on_stream_error), (gpointer)handle, NULL, 0);
	return 1;
}

int edgecam_scan_plugin_dir(const char *dir) {
	return gst_registry_scan_path(gst_registry_get(), dir);
}
