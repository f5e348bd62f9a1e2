package kvsupload

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeKVS is a small KVS stand-in for fault injection (ERROR acknowledgements, silence,
// outages) that localcloud does not offer: the control plane calls the uploader makes and a
// PutMedia that parses the Matroska stream as it arrives and acknowledges each cluster.
type fakeKVS struct {
	t    testing.TB
	addr string

	mu        sync.Mutex
	srv       *http.Server
	stream    string
	exists    bool
	stored    []storedFragment // PERSISTED fragments, in order, duplicates included
	errorFor  map[int64]int    // cluster timecode → ErrorId answered once instead of PERSISTED
	silent    bool             // new connections acknowledge and store nothing
	loseAck   map[int64]bool   // cluster timecode → stored, then the connection breaks before PERSISTED
	lists     int
	conns     int
	headers   int // track headers received
	changed   chan struct{}
	lastHdrs  http.Header
	endOfFrag int
}

type storedFragment struct {
	Timecode int64
	Frames   int
	Keyframe bool
}

func newFakeKVS(t testing.TB, stream string, exists bool) *fakeKVS {
	f := &fakeKVS{t: t, stream: stream, exists: exists, errorFor: map[int64]int{}, changed: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeKVS) URL() string { return "http://" + f.addr }

func (f *fakeKVS) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/describeStream", f.describe)
	mux.HandleFunc("/createStream", f.create)
	mux.HandleFunc("/getDataEndpoint", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"DataEndpoint": f.URL()})
	})
	mux.HandleFunc("/putMedia", f.putMedia)
	mux.HandleFunc("/listFragments", f.listFragments)
	srv := &http.Server{Handler: mux}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop closes the listener and every connection at once (an outage).
func (f *fakeKVS) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// start listens again on the same address.
func (f *fakeKVS) start() {
	ln, err := net.Listen("tcp", f.addr)
	require.NoError(f.t, err)
	f.serve(ln)
}

func (f *fakeKVS) awsError(w http.ResponseWriter, status int, kind, msg string) {
	w.Header().Set("x-amzn-ErrorType", kind)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Message": msg})
}

func (f *fakeKVS) describe(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	exists := f.exists
	f.mu.Unlock()
	if !exists {
		f.awsError(w, http.StatusNotFound, "ResourceNotFoundException", "The requested stream is not found or not active.")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"StreamInfo": map[string]any{"StreamName": f.stream, "Status": "ACTIVE",
		"StreamARN": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/" + f.stream + "/1"}})
}

func (f *fakeKVS) create(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.exists = true
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]string{"StreamARN": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/" + f.stream + "/1"})
}

func (f *fakeKVS) Stored() []storedFragment {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]storedFragment(nil), f.stored...)
}

func (f *fakeKVS) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *fakeKVS) putMedia(w http.ResponseWriter, r *http.Request) {
	_ = http.NewResponseController(w).EnableFullDuplex()
	f.mu.Lock()
	f.conns++
	f.lastHdrs = r.Header.Clone()
	silent := f.silent // a silent connection stays silent and stores nothing
	f.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	fl := http.NewResponseController(w)
	_ = fl.Flush()
	send := func(v map[string]any) {
		if silent {
			return
		}
		b, _ := json.Marshal(v)
		_, _ = w.Write(append(b, '\n'))
		_ = fl.Flush()
	}
	var cur *storedFragment
	complete := func() {
		if cur == nil {
			return
		}
		c := *cur
		cur = nil
		send(map[string]any{"EventType": "RECEIVED", "FragmentTimecode": c.Timecode, "FragmentNumber": "1"})
		f.mu.Lock()
		id, bad := f.errorFor[c.Timecode]
		delete(f.errorFor, c.Timecode)
		if !bad && !silent {
			f.stored = append(f.stored, c)
		}
		f.mu.Unlock()
		if f.loseAckFor(c.Timecode) {
			f.signal()
			panic(http.ErrAbortHandler) // stored, but the acknowledgement never leaves
		}
		if bad {
			send(map[string]any{"EventType": "ERROR", "FragmentTimecode": c.Timecode, "ErrorId": id})
		} else {
			send(map[string]any{"EventType": "PERSISTED", "FragmentTimecode": c.Timecode, "FragmentNumber": fmt.Sprint(c.Timecode)})
		}
		f.signal()
	}
	br := bufio.NewReader(r.Body)
	for {
		id, err := readVintID(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				complete() // the end of the body ends the last fragment
			}
			return
		}
		size, unknown, err := readVintSize(br)
		if err != nil {
			return
		}
		switch id {
		case idSegment:
			complete()
			continue
		case idCluster:
			complete()
			cur = &storedFragment{}
			continue
		case idTags:
			complete()
			f.mu.Lock()
			f.endOfFrag++
			f.mu.Unlock()
		case idTracks:
			f.mu.Lock()
			f.headers++
			f.mu.Unlock()
		}
		if unknown {
			f.t.Errorf("unknown size for element %x", id)
			return
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(br, data); err != nil {
			return
		}
		if cur == nil {
			continue
		}
		switch id {
		case idTimecode:
			var tc int64
			for _, b := range data {
				tc = tc<<8 | int64(b)
			}
			cur.Timecode = tc
			send(map[string]any{"EventType": "BUFFERING", "FragmentTimecode": tc, "FragmentNumber": "1"})
		case idSimpleBlock:
			if cur.Frames == 0 {
				cur.Keyframe = data[3]&0x80 != 0
			}
			cur.Frames++
		}
	}
}

func readVintID(r *bufio.Reader) (uint32, error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	n := 1
	for m := byte(0x80); m != 0 && b&m == 0; m >>= 1 {
		n++
	}
	if n > 4 {
		return 0, fmt.Errorf("bad element ID %x", b)
	}
	id := uint32(b)
	for i := 1; i < n; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		id = id<<8 | uint32(c)
	}
	return id, nil
}

func readVintSize(r *bufio.Reader) (int, bool, error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, false, err
	}
	n := 1
	for m := byte(0x80); m != 0 && b&m == 0; m >>= 1 {
		n++
	}
	if n > 8 {
		return 0, false, fmt.Errorf("bad size %x", b)
	}
	v := uint64(b & (0xFF >> n))
	all := v == uint64(0xFF>>n)
	for i := 1; i < n; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, false, err
		}
		v = v<<8 | uint64(c)
		all = all && c == 0xFF
	}
	return int(v), all, nil
}

func (f *fakeKVS) loseAckFor(tc int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	lose := f.loseAck[tc]
	delete(f.loseAck, tc)
	return lose
}

func (f *fakeKVS) listFragments(w http.ResponseWriter, r *http.Request) {
	var in struct {
		FragmentSelector struct {
			TimestampRange struct{ StartTimestamp, EndTimestamp float64 }
		}
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		f.awsError(w, http.StatusBadRequest, "InvalidArgumentException", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	list := []map[string]any{}
	for _, s := range f.stored {
		ts := float64(s.Timecode) / 1000
		if ts >= in.FragmentSelector.TimestampRange.StartTimestamp && ts <= in.FragmentSelector.TimestampRange.EndTimestamp {
			list = append(list, map[string]any{"FragmentNumber": fmt.Sprint(s.Timecode), "ProducerTimestamp": ts})
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"Fragments": list})
}
