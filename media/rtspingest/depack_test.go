package rtspingest

import (
	"bytes"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

type emitted struct {
	data []byte
	ts   uint32
	key  bool
}

// packetize turns a clip into RTP packets with gortsplib's encoder (what cameras send:
// single NAL units, STAP-A, FU-A for units above the MTU).
func packetize(t testing.TB, clip []rtsptest.AccessUnit) [][]*rtp.Packet {
	t.Helper()
	enc, err := (&format.H264{PayloadTyp: 96, PacketizationMode: 1}).CreateEncoder()
	require.NoError(t, err)
	out := make([][]*rtp.Packet, len(clip))
	for i, au := range clip {
		pkts, err := enc.Encode(au.NALUs)
		require.NoError(t, err)
		for _, p := range pkts {
			p.Timestamp = uint32(i * 3000)
		}
		out[i] = pkts
	}
	return out
}

func collector() (*depacketizer, *[]emitted, *[]error) {
	var units []emitted
	var losses []error
	d := &depacketizer{
		emit:   func(au []byte, ts uint32, key bool) { units = append(units, emitted{bytes.Clone(au), ts, key}) },
		onLoss: func(err error) { losses = append(losses, err) },
	}
	return d, &units, &losses
}

func TestDepacketizer(t *testing.T) {
	clip := encodeClip(t, 20, 10, "pattern=snow ! video/x-raw,width=640,height=360") // keyframes above the MTU: FU-A
	frames := packetize(t, clip)
	fragmented := false
	for _, p := range frames[0] {
		fragmented = fragmented || p.Payload[0]&0x1f == nalFUA
	}
	require.True(t, fragmented, "the keyframe must need FU-A at this size")

	t.Run("every unit, byte for byte", func(t *testing.T) {
		d, units, losses := collector()
		for _, pkts := range frames {
			for _, p := range pkts {
				d.push(p)
			}
		}
		require.Empty(t, *losses)
		require.Len(t, *units, len(clip))
		for i, u := range *units {
			require.Equal(t, annexB(clip[i].NALUs), u.data, "unit %d", i)
			require.Equal(t, uint32(i*3000), u.ts)
			require.Equal(t, i%10 == 0, u.key, "unit %d", i)
		}
	})

	t.Run("no marker bits: units end where the timestamp changes", func(t *testing.T) {
		d, units, _ := collector()
		for _, pkts := range frames {
			for _, p := range pkts {
				q := *p
				q.Marker = false
				d.push(&q)
			}
		}
		require.Len(t, *units, len(clip)-1, "the last unit waits for the next timestamp")
		for i, u := range *units {
			require.Equal(t, annexB(clip[i].NALUs), u.data, "unit %d", i)
		}
	})

	t.Run("a lost packet drops its unit and says so first", func(t *testing.T) {
		d, units, losses := collector()
		n := 0
		for i, pkts := range frames {
			for j, p := range pkts {
				if i == 10 && j == 1 { // inside the second keyframe
					continue
				}
				d.push(p)
				if len(*losses) == 1 && n == 0 {
					n = len(*units) // units emitted when the loss was reported
				}
			}
		}
		require.Len(t, *losses, 1)
		require.ErrorContains(t, (*losses)[0], "1 RTP packet(s) lost")
		require.Equal(t, 10, n, "the loss is reported before anything after it is emitted")
		require.Len(t, *units, len(clip)-1)
		for k, u := range *units {
			i := k
			if k >= 10 {
				i = k + 1
			}
			require.Equal(t, annexB(clip[i].NALUs), u.data, "unit %d", i)
		}
		require.Equal(t, uint64(1), d.lost)
	})

	t.Run("keyframes get the SDP's parameter sets", func(t *testing.T) {
		bare, sps, pps := withoutParamSets(clip)
		d, units, _ := collector()
		d.setParams(sps, pps)
		for _, pkts := range packetize(t, bare) {
			for _, p := range pkts {
				d.push(p)
			}
		}
		require.Len(t, *units, len(clip))
		for i, u := range *units {
			if u.key {
				got, gotPPS := h264.ParamSets(u.data)
				require.Equal(t, sps, got, "unit %d", i)
				require.Equal(t, pps, gotPPS, "unit %d", i)
				require.Equal(t, h264.NALAUD, h264.TypeOf(h264.Split(u.data)[0]), "the delimiter stays first")
			} else {
				require.Equal(t, annexB(bare[i].NALUs), u.data)
			}
		}
	})

	t.Run("interleaved mode is refused once per unit", func(t *testing.T) {
		d, units, losses := collector()
		d.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: 1, Timestamp: 1, Marker: true}, Payload: []byte{25, 0, 0}})
		require.Empty(t, *units)
		require.Len(t, *losses, 1)
		require.ErrorIs(t, (*losses)[0], errUnsupported)
	})
}

// BenchmarkDepacketize measures the per-packet cost and allocations of assembling a
// 640x360 stream (the Hub's copy of each unit is the source's, not counted here).
func BenchmarkDepacketize(b *testing.B) {
	clip := encodeClip(b, 60, 30, "pattern=snow ! video/x-raw,width=640,height=360")
	frames := packetize(b, clip)
	d := &depacketizer{emit: func([]byte, uint32, bool) {}, onLoss: func(error) {}}
	var seq uint16
	pkts := 0
	b.ReportAllocs()
	for b.Loop() {
		for i, f := range frames {
			for _, p := range f {
				p.SequenceNumber = seq
				p.Timestamp = uint32(i * 3000)
				seq++
				d.push(p)
				pkts++
			}
		}
	}
	b.ReportMetric(float64(pkts)/float64(b.N), "packets/op")
}
