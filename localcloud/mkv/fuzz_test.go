package mkv

import (
	"bytes"
	"io"
	"runtime"
	"testing"
)

// FuzzDemuxerMemory: with the limits PutMedia uses (blocks up to 50 MB), a stream costs
// memory in proportion to the bytes that actually arrive, not to the sizes its elements
// announce: a few bytes claiming a 50 MB block must not make the server allocate 50 MB.
// Seeds (a real kvssink fragment, hostile sizes) in testdata/fuzz.
func FuzzDemuxerMemory(f *testing.F) {
	f.Add(producerStream(1, 2))
	f.Add(Concat(producerStream(1, 1), AppendHeader(nil, IDSimpleBlock, 40<<20), []byte{0x81, 0, 0, 0x80}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		d := NewDemuxer(bytes.NewReader(data), Limits{MaxBlock: 50<<20 + 1})
		if len(data) > 0 && data[0]&1 == 1 {
			d.Resume()
		}
		for {
			if _, err := d.Next(); err != nil {
				if err != io.EOF && !IsFormatError(err) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				break
			}
		}
		runtime.ReadMemStats(&after)
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(8*len(data)+4<<20); got > limit {
			t.Fatalf("%d bytes allocated for a stream of %d bytes (limit %d)", got, len(data), limit)
		}
	})
}
