package h264

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

var (
	sc4 = []byte{0, 0, 0, 1}
	sc3 = []byte{0, 0, 1}
	aud = []byte{0x09, 0xf0}
	sps = []byte{0x67, 0x42, 0xc0, 0x16, 0xd9}
	pps = []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}
	idr = []byte{0x65, 0x88, 0x84, 0x00, 0x33}
	non = []byte{0x41, 0x9a, 0x21, 0x6c}
	sei = []byte{0x06, 0x05, 0x11, 0x80}
)

func join(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		want   [][]byte
	}{
		{"empty", nil, nil},
		{"four-byte start codes", join(sc4, sps, sc4, pps, sc4, idr), [][]byte{sps, pps, idr}},
		{"three-byte start codes", join(sc3, sps, sc3, pps, sc3, idr), [][]byte{sps, pps, idr}},
		{"mixed with trailing zeros", join(sc4, aud, []byte{0, 0}, sc3, idr, []byte{0}), [][]byte{aud, idr}},
		{"no start code yields the whole buffer", idr, [][]byte{idr}},
		{"garbage before first start code is kept", join([]byte{0x41, 0x01}, sc4, idr), [][]byte{{0x41, 0x01}, idr}},
		{"start code at end", join(sc4, idr, sc4), [][]byte{idr}},
		{"empty units are skipped", join(sc4, sc4, idr), [][]byte{idr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Split(tt.stream))
		})
	}
}

func TestNALUnitsStopsEarly(t *testing.T) {
	n := 0
	for range NALUnits(join(sc4, sps, sc4, pps, sc4, idr)) {
		n++
		break
	}
	require.Equal(t, 1, n)
}

func TestIsKeyframe(t *testing.T) {
	tests := []struct {
		name string
		au   []byte
		want bool
	}{
		{"IDR with parameter sets", join(sc4, aud, sc4, sps, sc4, pps, sc4, idr), true},
		{"bare IDR", join(sc4, idr), true},
		{"SEI then IDR", join(sc4, sei, sc3, idr), true},
		{"non-IDR slice", join(sc4, aud, sc4, non), false},
		{"parameter sets without a slice", join(sc4, sps, sc4, pps), false},
		{"empty", nil, false},
		// A recovery-point SEI on a non-IDR slice is not an IDR: decoders need NAL type 5.
		{"non-IDR slice with SEI", join(sc4, sei, sc4, non), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, IsKeyframe(tt.au))
		})
	}
}

func TestParamSets(t *testing.T) {
	gotSPS, gotPPS := ParamSets(join(sc4, aud, sc4, sps, sc4, pps, sc4, idr))
	require.Equal(t, sps, gotSPS)
	require.Equal(t, pps, gotPPS)
	require.True(t, HasParamSets(join(sc4, sps, sc4, pps, sc4, idr)))
	require.False(t, HasParamSets(join(sc4, sps, sc4, idr)))
	gotSPS, gotPPS = ParamSets(join(sc4, non))
	require.Nil(t, gotSPS)
	require.Nil(t, gotPPS)
}

func TestTypeString(t *testing.T) {
	require.Equal(t, "IDR", TypeOf(idr).String())
	require.Equal(t, "SPS", NALSPS.String())
	require.Equal(t, "reserved", NALType(25).String())
	require.Equal(t, NALType(0), TypeOf(nil))
}

func TestAVCCRoundTrip(t *testing.T) {
	au := join(sc4, sps, sc4, pps, sc4, idr)
	avcc := AnnexBToAVCC(nil, au)
	require.Equal(t, []byte{0, 0, 0, byte(len(sps))}, avcc[:4])
	back, err := AVCCToAnnexB(nil, avcc)
	require.NoError(t, err)
	require.Equal(t, au, back)

	_, err = AVCCToAnnexB(nil, []byte{0, 0, 0, 9, 1, 2})
	require.ErrorIs(t, err, errTruncated)
	_, err = AVCCToAnnexB(nil, []byte{0, 0})
	require.ErrorIs(t, err, errTruncated)
}

// SPS units produced by x264 through GStreamer at the sizes edgecam uses.
var spsSamples = []struct {
	name          string
	hex           string
	width, height int
	codec         string
}{
	{"640x360 baseline (cropped)", "6742c016d900a02ff97016a0c0c0d4a0000003002000000303d1e2c5c9", 640, 360, "avc1.42c016"},
	{"1280x720 high", "6764001facd9405005bb016a02020280000003008000000f478c18cb", 1280, 720, "avc1.64001f"},
	{"1920x1080 main (cropped)", "674d4028eca03c0113f2e02d40404050000003001000000301e8f1831960", 1920, 1080, "avc1.4d4028"},
	{"320x180 high (cropped)", "67640014acd941419f9f016a0c0c0d4a0000030002000003003d1e28532c", 320, 180, "avc1.640014"},
	{"1366x768 high (cropped width)", "67640020acd94056061e6f016a02020280000003008000000f478c18cb", 1366, 768, "avc1.640020"},
}

func TestParseSPS(t *testing.T) {
	for _, tt := range spsSamples {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSPS(mustHex(t, tt.hex))
			require.NoError(t, err)
			require.Equal(t, tt.width, s.Width)
			require.Equal(t, tt.height, s.Height)
			require.Equal(t, tt.codec, s.Codec())
			require.True(t, s.FrameMBsOnly)
		})
	}
}

func TestParseSPSErrors(t *testing.T) {
	good := mustHex(t, spsSamples[1].hex)
	tests := []struct {
		name string
		nal  []byte
		want string
	}{
		{"too short", []byte{0x67, 0x64}, "too short"},
		{"not an SPS", append([]byte{0x68}, good[1:]...), "not an SPS"},
		{"truncated", good[:6], "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSPS(tt.nal)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestUnescapeRBSP(t *testing.T) {
	require.Equal(t, []byte{0, 0, 1, 0, 0, 2}, unescapeRBSP([]byte{0, 0, 3, 1, 0, 0, 3, 2}))
	require.Equal(t, []byte{1, 2, 3}, unescapeRBSP([]byte{1, 2, 3}))
}

func FuzzParseSPS(f *testing.F) {
	for _, s := range spsSamples {
		b, _ := hex.DecodeString(s.hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSPS(b)
		if err == nil && (s.Width <= 0 || s.Height <= 0) {
			t.Fatalf("accepted SPS with size %dx%d", s.Width, s.Height)
		}
	})
}

func FuzzSplit(f *testing.F) {
	f.Add(join(sc4, sps, sc4, pps, sc4, idr))
	f.Add(join(sc3, aud, []byte{0, 0}, sc3))
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		for nal := range NALUnits(b) {
			if len(nal) == 0 {
				t.Fatal("empty NAL unit yielded")
			}
			total += len(nal)
		}
		if total > len(b) {
			t.Fatalf("units hold %d bytes of a %d-byte stream", total, len(b))
		}
	})
}
