package kvsupload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

// FuzzAcks: whatever KVS (or something in its place) writes back on a PutMedia connection,
// the acknowledgement reader returns instead of panicking or blocking; only PERSISTED and
// ERROR for a fragment sent on the connection take it off the in-flight list, a fragment
// leaves the spool only then, and the upload stops only for ErrFatal. Seeds: kvssink-style
// ack streams (../shared/WIRE-FORMATS.md §6) in testdata/fuzz.
func FuzzAcks(f *testing.F) {
	f.Add([]byte("{\"EventType\":\"BUFFERING\",\"FragmentTimecode\":1000}\n{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":1000,\"FragmentNumber\":\"91343852333181432392682062607743920146264440051\"}\n"))
	f.Add([]byte("{\"EventType\":\"ERROR\",\"FragmentTimecode\":3000,\"ErrorId\":4008}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		sp, err := OpenSpool(SpoolOptions{Dir: t.TempDir(), SyncEvery: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		u, err := NewUploader(UploaderOptions{Spool: sp, StreamName: "cam-1", Region: "us-east-1", Credentials: staticCreds(time.Time{})})
		if err != nil {
			t.Fatal(err)
		}
		c := &conn{acked: make(chan struct{}, 1), stopCh: make(chan struct{})}
		for i := range 3 {
			fr := &Fragment{Timecode: int64(1000 + 2000*i), Wall: time.Unix(1, 0), Frames: 1, Duration: time.Second, Header: []byte("h"), Cluster: []byte("c")}
			if err := sp.Append(fr); err != nil {
				t.Fatal(err)
			}
			c.inflight = append(c.inflight, sent{seq: fr.Seq, timecode: fr.Timecode})
		}
		before := append([]sent(nil), c.inflight...)
		var aborted error
		abort := func(err error) { aborted = err }

		err = u.readAcks(bytes.NewReader(body), c, context.CancelCauseFunc(abort))
		switch {
		case err == nil, errors.Is(err, bufio.ErrTooLong):
			if aborted != nil {
				t.Fatalf("aborted (%v) but returned %v", aborted, err)
			}
		case errors.Is(err, ErrFatal):
			if !errors.Is(aborted, ErrFatal) {
				t.Fatalf("returned %v without aborting the upload", err)
			}
		default:
			t.Fatalf("unexpected error %T %v", err, err)
		}
		if len(c.inflight) > len(before) {
			t.Fatalf("%d fragments in flight after acknowledgements, %d before", len(c.inflight), len(before))
		}
		// What left the in-flight list was acknowledged by its own timecode.
		left := map[uint64]bool{}
		for _, s := range before {
			left[s.seq] = true
		}
		for _, s := range c.inflight {
			delete(left, s.seq)
		}
		for _, s := range before {
			if left[s.seq] && !bytes.Contains(body, []byte(strconv.FormatInt(s.timecode, 10))) {
				t.Fatalf("fragment %d (timecode %d) left without an acknowledgement naming it", s.seq, s.timecode)
			}
		}
		st := u.Stats()
		var n uint64
		for _, v := range st.Acks {
			n += v
		}
		if n > uint64(bytes.Count(body, []byte("\n"))+1) {
			t.Fatalf("%d acknowledgements counted from %d lines", n, bytes.Count(body, []byte("\n"))+1)
		}
	})
}
