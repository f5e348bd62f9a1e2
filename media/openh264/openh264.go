// Package openh264 decodes H.264 in process with Cisco's libopenh264, loaded at run time
// (dlopen): for a camera's low-resolution substream, read by the Go RTSP client, motion
// analysis then needs no GStreamer at all (no registry, plugins, pipeline or streaming
// threads in memory). When the library is not installed, Load says so and the caller
// decodes with GStreamer instead.
//
// The structures below mirror libopenh264's C API (wels/codec_api.h, codec_def.h,
// codec_app_def.h), stable since openh264 1.8; the library's major version is checked on
// load. The package needs no development headers, only the shared library at run time.
package openh264

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	int iWidth;
	int iHeight;
	int iFormat;
	int iStride[2];
} eh_sysmem;

typedef struct {
	int iBufferStatus;
	unsigned long long uiInBsTimeStamp;
	unsigned long long uiOutYuvTimeStamp;
	union {
		eh_sysmem sSystemBuffer;
	} UsrData;
	unsigned char *pDst[3];
} eh_bufinfo;

typedef struct {
	unsigned int size;
	int eVideoBsType;
} eh_videoprop;

typedef struct {
	char *pFileNameRestructed;
	unsigned int uiCpuLoad;
	unsigned char uiTargetDqLayer;
	int eEcActiveIdc;
	bool bParseOnly;
	eh_videoprop sVideoProperty;
} eh_param;

typedef struct {
	unsigned int uMajor, uMinor, uRevision, uReserved;
} eh_version;

typedef struct eh_vtbl eh_vtbl;
typedef const eh_vtbl *eh_dec;
struct eh_vtbl {
	long (*Initialize)(eh_dec *, const eh_param *);
	long (*Uninitialize)(eh_dec *);
	int (*DecodeFrame)(eh_dec *, const unsigned char *, const int, unsigned char **, int *, int *, int *);
	int (*DecodeFrameNoDelay)(eh_dec *, const unsigned char *, const int, unsigned char **, eh_bufinfo *);
	int (*DecodeFrame2)(eh_dec *, const unsigned char *, const int, unsigned char **, eh_bufinfo *);
	int (*FlushFrame)(eh_dec *, unsigned char **, eh_bufinfo *);
	void *DecodeParser;
	void *DecodeFrameEx;
	long (*SetOption)(eh_dec *, int, void *);
	long (*GetOption)(eh_dec *, int, void *);
};

static long (*eh_create)(eh_dec **);
static void (*eh_destroy)(eh_dec *);
static eh_version (*eh_get_version)(void);

// eh_load opens the library; it returns NULL or why it failed.
static const char *eh_load(const char *name) {
	void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!lib) return dlerror();
	eh_create = (long (*)(eh_dec **))dlsym(lib, "WelsCreateDecoder");
	eh_destroy = (void (*)(eh_dec *))dlsym(lib, "WelsDestroyDecoder");
	eh_get_version = (eh_version (*)(void))dlsym(lib, "WelsGetCodecVersion");
	if (!eh_create || !eh_destroy || !eh_get_version) {
		dlclose(lib);
		eh_create = NULL;
		return "WelsCreateDecoder, WelsDestroyDecoder or WelsGetCodecVersion missing";
	}
	return NULL;
}

static unsigned int eh_major(void) { return eh_get_version().uMajor; }
static unsigned int eh_minor(void) { return eh_get_version().uMinor; }

enum {
	EH_OPTION_TRACE_LEVEL = 9, // DECODER_OPTION_TRACE_LEVEL
	EH_LOG_QUIET = 0,          // WELS_LOG_QUIET
	EH_ERROR_CON_DISABLE = 0,  // broken pictures are not output
	EH_VIDEO_BITSTREAM_AVC = 0,
};

static eh_dec *eh_new(long *rc) {
	eh_dec *d = NULL;
	*rc = eh_create(&d);
	if (*rc != 0 || d == NULL) return NULL;
	int quiet = EH_LOG_QUIET;
	(*d)->SetOption(d, EH_OPTION_TRACE_LEVEL, &quiet);
	eh_param p;
	memset(&p, 0, sizeof p);
	p.uiTargetDqLayer = 255;
	p.eEcActiveIdc = EH_ERROR_CON_DISABLE;
	p.sVideoProperty.size = sizeof p.sVideoProperty;
	p.sVideoProperty.eVideoBsType = EH_VIDEO_BITSTREAM_AVC;
	*rc = (*d)->Initialize(d, &p);
	if (*rc != 0) {
		eh_destroy(d);
		return NULL;
	}
	return d;
}

static int eh_decode(eh_dec *d, const unsigned char *src, int len, unsigned long long ts, eh_bufinfo *info) {
	unsigned char *dst[3] = {0};
	memset(info, 0, sizeof *info);
	info->uiInBsTimeStamp = ts;
	return (*d)->DecodeFrameNoDelay(d, src, len, dst, info);
}

static int eh_flush(eh_dec *d, eh_bufinfo *info) {
	unsigned char *dst[3] = {0};
	memset(info, 0, sizeof *info);
	return (*d)->FlushFrame(d, dst, info);
}

static void eh_free(eh_dec *d) {
	(*d)->Uninitialize(d);
	eh_destroy(d);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// libraries are the shared objects tried, newest ABI first (Debian 12 and Raspberry Pi OS
// bookworm ship libopenh264.so.7; bullseye .so.6).
var libraries = []string{"libopenh264.so.7", "libopenh264.so.6", "libopenh264.so"}

var (
	loadOnce sync.Once
	loadErr  error
	version  string
)

// Load loads libopenh264 once and reports whether it can decode here (nil) or why not.
func Load() error {
	loadOnce.Do(func() {
		var why []string
		for _, name := range libraries {
			cname := C.CString(name)
			msg := C.eh_load(cname)
			C.free(unsafe.Pointer(cname))
			if msg != nil {
				why = append(why, C.GoString(msg))
				continue
			}
			major, minor := uint(C.eh_major()), uint(C.eh_minor())
			if major < 2 {
				why = append(why, fmt.Sprintf("%s is version %d.%d; 2 or newer is needed", name, major, minor))
				continue
			}
			version = fmt.Sprintf("%d.%d", major, minor)
			return
		}
		loadErr = fmt.Errorf("libopenh264 is not installed (install libopenh264-7): %s", strings.Join(why, "; "))
	})
	return loadErr
}

// Version returns the loaded library's version (major.minor), empty before a successful Load.
func Version() string {
	if Load() != nil {
		return ""
	}
	return version
}

// Picture is a decoded picture's luma plane: Y holds Height rows of Stride bytes, Width of
// them the picture. It points into the decoder's memory: it is valid until the decoder's
// next Decode, Flush or Close.
type Picture struct {
	Y             []byte
	Width, Height int
	Stride        int
	// PTS is the timestamp given with the access unit the picture came from: a decoder
	// that reorders pictures (Main and High profile streams, which may hold B-frames)
	// returns each one access unit later.
	PTS time.Duration
}

// Decoder decodes one H.264 stream. It is not safe for concurrent use.
type Decoder struct {
	d    *C.eh_dec
	info C.eh_bufinfo
}

// ErrBitstream is wrapped by Decode's errors for units the decoder could not decode (a
// lost reference, a damaged unit): the next keyframe decodes again.
var ErrBitstream = errors.New("H.264 not decodable")

// New returns a decoder (single-threaded, without error concealment: a damaged picture is
// not output).
func New() (*Decoder, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	var rc C.long
	d := C.eh_new(&rc)
	if d == nil {
		return nil, fmt.Errorf("libopenh264: the decoder did not start (code %d)", int(rc))
	}
	return &Decoder{d: d}, nil
}

// Decode decodes one access unit in Annex-B form (start codes, SPS and PPS in band before
// the first keyframe) with its timestamp (not negative), and returns a picture when one is
// ready: the unit's, or with a reordering stream an earlier one's (Picture.PTS says
// which). A damaged or undecodable unit returns an error wrapping ErrBitstream; the
// decoder stays usable.
func (d *Decoder) Decode(au []byte, pts time.Duration) (Picture, bool, error) {
	if d.d == nil {
		return Picture{}, false, errors.New("libopenh264: decoder closed")
	}
	if len(au) == 0 {
		return Picture{}, false, nil
	}
	// au holds no Go pointers and is only read during the call.
	state := C.eh_decode(d.d, (*C.uchar)(unsafe.Pointer(&au[0])), C.int(len(au)), C.ulonglong(max(pts, 0)), &d.info)
	return d.picture(state)
}

// Flush returns a picture the decoder still holds (a reordering stream's last), if any;
// call it until it returns false at the end of a stream.
func (d *Decoder) Flush() (Picture, bool, error) {
	if d.d == nil {
		return Picture{}, false, errors.New("libopenh264: decoder closed")
	}
	return d.picture(C.eh_flush(d.d, &d.info))
}

func (d *Decoder) picture(state C.int) (Picture, bool, error) {
	if state != 0 {
		return Picture{}, false, fmt.Errorf("%w (decoding state 0x%x)", ErrBitstream, int(state))
	}
	if d.info.iBufferStatus != 1 || d.info.pDst[0] == nil {
		return Picture{}, false, nil
	}
	sys := (*C.eh_sysmem)(unsafe.Pointer(&d.info.UsrData))
	w, h, stride := int(sys.iWidth), int(sys.iHeight), int(sys.iStride[0])
	if w <= 0 || h <= 0 || stride < w {
		return Picture{}, false, fmt.Errorf("%w: picture %dx%d, stride %d", ErrBitstream, w, h, stride)
	}
	y := unsafe.Slice((*byte)(unsafe.Pointer(d.info.pDst[0])), stride*(h-1)+w)
	return Picture{Y: y, Width: w, Height: h, Stride: stride, PTS: time.Duration(d.info.uiOutYuvTimeStamp)}, true, nil
}

// Close frees the decoder.
func (d *Decoder) Close() {
	if d.d != nil {
		C.eh_free(d.d)
		d.d = nil
	}
}
