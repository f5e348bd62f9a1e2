package webrtc

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	pion "github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// nal makes a NAL unit of type typ and n bytes (payload bytes never form a start code).
func nal(typ byte, n int) []byte {
	b := make([]byte, n)
	b[0] = 0x60 | typ
	for i := 1; i < n; i++ {
		b[i] = byte(i%250) + 3
	}
	return b
}

func annexB(nals ...[]byte) []byte {
	var out []byte
	for _, n := range nals {
		out = append(append(out, 0, 0, 0, 1), n...)
	}
	return out
}

func TestPacketizerRoundTrip(t *testing.T) {
	sps, pps := nal(7, 20), nal(8, 6)
	for _, tc := range []struct {
		name    string
		au      []byte
		want    []byte // what a depacketiser must give back
		packets int
	}{
		{"small slice", annexB(nal(1, 300)), annexB(nal(1, 300)), 1},
		{"AUD and filler are not sent", annexB(nal(9, 2), nal(1, 300), nal(12, 10)), annexB(nal(1, 300)), 1},
		{"exactly one packet", annexB(nal(1, rtpMTU-12)), annexB(nal(1, rtpMTU-12)), 1},
		{"one byte over: FU-A", annexB(nal(1, rtpMTU-11)), annexB(nal(1, rtpMTU-11)), 2},
		{"keyframe: SPS+PPS in one STAP-A, IDR in FU-A", annexB(nal(9, 2), sps, pps, nal(5, 60_000)), annexB(sps, pps, nal(5, 60_000)), 1 + 60_000/(rtpMTU-14) + 1},
		{"SEI then slices", annexB(nal(6, 40), nal(1, 2000), nal(1, 100)), annexB(nal(6, 40), nal(1, 2000), nal(1, 100)), 4},
		{"parameter sets alone", annexB(sps, pps), annexB(sps, pps), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPacketizer(rtpMTU)
			var got []byte
			var dp codecs.H264Packet
			n, markers := 0, 0
			require.NoError(t, p.packetize(tc.au, func(payload []byte, last bool) error {
				require.LessOrEqual(t, len(payload), rtpMTU-12, "no payload over the MTU")
				n++
				if last {
					markers++
				}
				out, err := dp.Unmarshal(bytes.Clone(payload))
				require.NoError(t, err)
				got = append(got, out...)
				return nil
			}))
			require.Equal(t, tc.packets, n)
			require.Equal(t, 1, markers, "one marker bit, on the last packet")
			require.Equal(t, h264.Split(tc.want), h264.Split(got))
		})
	}
}

func TestPacerRate(t *testing.T) {
	// 300 KB at 3 MB/s take about 100 ms, never much less, however many packets they are.
	p := pacer{rate: 3_000_000}
	start := time.Now()
	for range 250 {
		require.NoError(t, p.wait(context.Background(), 1200))
	}
	require.GreaterOrEqual(t, time.Since(start), 95*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := pacer{rate: 10_000}
	require.NoError(t, slow.wait(ctx, 1), "under a quantum: no wait")
	require.ErrorIs(t, slow.wait(ctx, 1200), context.Canceled, "a wait ends with its context")
}

var benchIDR = annexB(nal(9, 2), nal(7, 20), nal(8, 6), nal(5, 63_000))

// BenchmarkPacketize: the session's packetiser against pion's (what TrackLocalStaticSample
// runs per sample), on a 63 KB IDR access unit.
func BenchmarkPacketize(b *testing.B) {
	b.Run("edgecam", func(b *testing.B) {
		p := newPacketizer(rtpMTU)
		var sent int
		b.ReportAllocs()
		b.SetBytes(int64(len(benchIDR)))
		for b.Loop() {
			_ = p.packetize(benchIDR, func(payload []byte, _ bool) error { sent += len(payload); return nil })
		}
	})
	b.Run("pion", func(b *testing.B) {
		p := rtp.NewPacketizer(rtpMTU, 0, 0, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
		b.ReportAllocs()
		b.SetBytes(int64(len(benchIDR)))
		for b.Loop() {
			_ = p.Packetize(benchIDR, 3000)
		}
	})
}

// TestCatchUpFollowsTheStream: started with an estimate of the stream's rate far too low
// (100 KB/s for a 600 KB/s stream: a catch-up at 3× that would never end), the transmitter
// measures the units it sends and paces at 3× the measured rate.
func TestCatchUpFollowsTheStream(t *testing.T) {
	track, err := pion.NewTrackLocalStaticRTP(pion.RTPCodecCapability{MimeType: pion.MimeTypeH264, ClockRate: 90000}, "v", "s")
	require.NoError(t, err)
	tx := newTransmitter(track, 100_000, 3, 0, 0)
	unit := annexB(nal(1, 20_000))
	for i := range 10 {
		pts := time.Duration(i) * 33 * time.Millisecond
		require.NoError(t, tx.send(context.Background(), media.AccessUnit{Data: unit, PTS: pts, Duration: 33 * time.Millisecond}, true))
	}
	stream := float64(len(unit)) / (33 * time.Millisecond).Seconds()
	require.InDelta(t, 3*stream, tx.catchUpRate, 0.05*3*stream)
}
