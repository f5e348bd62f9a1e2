package h264

import (
	"bytes"
	"testing"
)

// FuzzAccessUnit: any Annex-B access unit (real ones from the test clips are the seeds, in
// testdata/fuzz) survives the trip to AVCC and back with the same NAL units; the keyframe
// test agrees with the first slice among them; ParamSets returns an SPS and a PPS of the
// unit itself; an SPS in it parses or gives an error.
func FuzzAccessUnit(f *testing.F) {
	f.Add(join(sc4, sps, sc4, pps, sc4, idr))
	f.Add(join(sc3, aud, sc3, []byte{0x41, 0x9a}, []byte{0, 0, 0}))
	f.Fuzz(func(t *testing.T, au []byte) {
		units := Split(au)
		avcc := AnnexBToAVCC(nil, au)
		back, err := AVCCToAnnexB(nil, avcc)
		if err != nil {
			t.Fatalf("AVCC made from Annex-B does not convert back: %v", err)
		}
		again := Split(back)
		if len(again) != len(units) {
			t.Fatalf("%d NAL units after the round trip, %d before", len(again), len(units))
		}
		for i := range units {
			if !bytes.Equal(units[i], again[i]) {
				t.Fatalf("NAL unit %d changed in the round trip: % x → % x", i, units[i], again[i])
			}
		}

		// The keyframe test reads headers only; it must agree with a full split (data before
		// the first start code is not a NAL unit it looks at).
		want := false
		first := indexStartCode(au, 0)
		lead := first < 0 && len(au) > 0 || first > 0 && len(trimTrailingZeros(au[:first])) > 0
		for i, nal := range units {
			if i == 0 && lead {
				continue
			}
			if tp := TypeOf(nal); tp == NALIDR || tp == NALSlice || tp == NALSliceA {
				want = tp == NALIDR
				break
			}
		}
		if got := IsKeyframe(au); got != want {
			t.Fatalf("IsKeyframe = %v, the NAL units say %v", got, want)
		}

		s, p := ParamSets(au)
		if s != nil && TypeOf(s) != NALSPS || p != nil && TypeOf(p) != NALPPS {
			t.Fatalf("ParamSets returned types %v and %v", TypeOf(s), TypeOf(p))
		}
		if HasParamSets(au) != (s != nil && p != nil) {
			t.Fatal("HasParamSets disagrees with ParamSets")
		}
		if s != nil {
			if parsed, err := ParseSPS(s); err == nil && (parsed.Width <= 0 || parsed.Height <= 0) {
				t.Fatalf("accepted SPS with size %dx%d", parsed.Width, parsed.Height)
			}
		}
	})
}

// FuzzAVCC: any AVCC data from a container converts to Annex-B of the same length or gives
// an error; lengths that run past the end are refused, never read beyond the data.
func FuzzAVCC(f *testing.F) {
	f.Add(AnnexBToAVCC(nil, join(sc4, sps, sc4, pps, sc4, idr)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, avcc []byte) {
		out, err := AVCCToAnnexB(nil, avcc)
		if err != nil {
			return
		}
		if len(out) != len(avcc) {
			t.Fatalf("Annex-B of %d bytes from AVCC of %d", len(out), len(avcc))
		}
	})
}
