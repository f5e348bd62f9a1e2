package h264

import (
	"bytes"
	"testing"
)

// benchAU is a 720p-sized keyframe access unit: AUD, SPS, PPS, SEI and a 60 KB IDR slice
// without start-code emulation inside.
func benchAU() []byte {
	slice := append([]byte{0x65}, bytes.Repeat([]byte{0x5a, 0xa5, 0x11, 0x80}, 15000)...)
	return join(sc4, aud, sc4, sps, sc4, pps, sc4, sei, sc4, slice)
}

func BenchmarkIsKeyframe(b *testing.B) {
	au := benchAU()
	b.SetBytes(int64(len(au)))
	b.ReportAllocs()
	for b.Loop() {
		if !IsKeyframe(au) {
			b.Fatal("not a keyframe")
		}
	}
}

func BenchmarkNALUnits(b *testing.B) {
	au := benchAU()
	b.SetBytes(int64(len(au)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for range NALUnits(au) {
			n++
		}
		if n != 5 {
			b.Fatalf("got %d units", n)
		}
	}
}

func BenchmarkParseSPS(b *testing.B) {
	nal := mustHex(b, spsSamples[1].hex)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSPS(nal); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAnnexBToAVCC(b *testing.B) {
	au := benchAU()
	dst := make([]byte, 0, len(au)+64)
	b.SetBytes(int64(len(au)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AnnexBToAVCC(dst[:0], au)
	}
}
