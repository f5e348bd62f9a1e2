package webrtc

import (
	"testing"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// A viewer's NACK is answered from its last NACKHistory packets, and only from them (each
// kept packet costs a 1.5 KB buffer per viewer).
func TestNACKHistoryBoundsRetransmissions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		history    int
		nacked     uint16 // sequence number asked for again, of 1..1024 sent
		retransmit bool
	}{
		{name: "default, recent", history: DefaultNACKHistory, nacked: 1000, retransmit: true},
		{name: "default, last kept", history: DefaultNACKHistory, nacked: 1024 - DefaultNACKHistory + 1, retransmit: true},
		{name: "default, too old", history: DefaultNACKHistory, nacked: 1024 - DefaultNACKHistory, retransmit: false},
		{name: "default, oldest", history: DefaultNACKHistory, nacked: 1, retransmit: false},
		{name: "1024, oldest", history: 1024, nacked: 1, retransmit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := nackResponder(tc.history)
			require.NoError(t, err)
			ic, err := f.NewInterceptor("")
			require.NoError(t, err)
			defer ic.Close()

			const ssrc = 0x1234
			written := make(chan uint16, 2048)
			w := ic.BindLocalStream(&interceptor.StreamInfo{SSRC: ssrc, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}},
				interceptor.RTPWriterFunc(func(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
					written <- h.SequenceNumber
					return 0, nil
				}))
			payload := make([]byte, 1000)
			for seq := uint16(1); seq <= 1024; seq++ {
				_, err := w.Write(&rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq}, payload, nil)
				require.NoError(t, err)
				require.Equal(t, seq, <-written)
			}

			// The NACK asks for tc.nacked, then for the newest packet: the responder resends
			// in that order, so once the newest is back, tc.nacked was resent or never will be.
			nackPkt, err := (&rtcp.TransportLayerNack{MediaSSRC: ssrc,
				Nacks: []rtcp.NackPair{{PacketID: tc.nacked}, {PacketID: 1024}}}).Marshal()
			require.NoError(t, err)
			r := ic.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
				return copy(b, nackPkt), a, nil
			}))
			_, _, err = r.Read(make([]byte, 1500), nil)
			require.NoError(t, err)

			var resent []uint16
			deadline := time.After(10 * time.Second)
			for len(resent) == 0 || resent[len(resent)-1] != 1024 {
				select {
				case seq := <-written:
					resent = append(resent, seq)
				case <-deadline:
					t.Fatalf("the newest packet was not resent; resent %v", resent)
				}
			}
			if tc.retransmit {
				require.Equal(t, []uint16{tc.nacked, 1024}, resent)
			} else {
				require.Equal(t, []uint16{1024}, resent)
			}
		})
	}
}

func TestNACKHistoryMustBeAPowerOfTwo(t *testing.T) {
	hub := media.NewHub(media.HubOptions{})
	for _, n := range []int{-1, 1, 63, 100, 1 << 16} {
		_, err := NewServer(Options{Hub: hub, NACKHistory: n})
		require.ErrorContains(t, err, "power of two from 64 to 32768", "history %d", n)
	}
	for _, n := range []int{0, 64, 512, 1 << 15} {
		s, err := NewServer(Options{Hub: hub, NACKHistory: n})
		require.NoError(t, err, "history %d", n)
		s.Close()
	}
}
