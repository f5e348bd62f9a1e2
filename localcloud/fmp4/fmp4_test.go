package fmp4

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

var avcc = []byte{1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE}

// boxes splits top-level boxes into type → body.
func boxes(t *testing.T, b []byte) (types []string, bodies [][]byte) {
	for len(b) > 0 {
		require.GreaterOrEqual(t, len(b), 8)
		n := int(binary.BigEndian.Uint32(b))
		require.LessOrEqual(t, n, len(b))
		types = append(types, string(b[4:8]))
		bodies = append(bodies, b[8:n])
		b = b[n:]
	}
	return
}

func TestInit(t *testing.T) {
	init, err := Init(Track{Width: 640, Height: 360, AVCC: avcc})
	require.NoError(t, err)
	types, _ := boxes(t, init)
	require.Equal(t, []string{"ftyp", "moov"}, types)

	_, err = Init(Track{AVCC: []byte{0, 1, 2}})
	require.Error(t, err)
}

func TestFragmentDataOffsetPointsAtTheSamples(t *testing.T) {
	samples := []Sample{{Duration: 66, Keyframe: true, Data: []byte{0, 0, 0, 1, 0x65}}, {Duration: 67, Data: []byte{0, 0, 0, 2, 0x41, 9}}}
	frag := Fragment(Track{}, 7, 1234, samples)
	types, bodies := boxes(t, frag)
	require.Equal(t, []string{"moof", "mdat"}, types)
	require.Equal(t, []byte{0, 0, 0, 1, 0x65, 0, 0, 0, 2, 0x41, 9}, bodies[1])
	// trun is the last box of traf, the last box of moof: its data offset (after version,
	// flags and sample count) is counted from the moof's first byte.
	moofLen := len(bodies[0]) + 8
	trun := frag[:moofLen]
	at := -1
	for i := 0; i+4 <= len(trun); i++ {
		if string(trun[i:i+4]) == "trun" {
			at = i
		}
	}
	require.Positive(t, at)
	offset := int(binary.BigEndian.Uint32(frag[at+12:]))
	require.Equal(t, moofLen+8, offset)
	require.Equal(t, samples[0].Data, frag[offset:offset+5])
}

func BenchmarkFragment(b *testing.B) {
	frame := make([]byte, 8000)
	samples := make([]Sample, 60)
	for i := range samples {
		samples[i] = Sample{Duration: 33, Keyframe: i == 0, Data: frame}
	}
	b.SetBytes(int64(len(frame) * len(samples)))
	for i := 0; i < b.N; i++ {
		Fragment(Track{}, uint32(i), uint64(i)*2000, samples)
	}
}
