// Package h264 holds pure-Go helpers for H.264 elementary streams: Annex-B splitting,
// NAL unit types, keyframe detection, parameter-set extraction and SPS parsing.
package h264

import (
	"bytes"
	"iter"
)

// NALType is the nal_unit_type of an H.264 NAL unit (ITU-T H.264 table 7-1).
type NALType uint8

// NAL unit types edgecam cares about.
const (
	NALSlice    NALType = 1  // coded slice of a non-IDR picture
	NALSliceA   NALType = 2  // slice data partition A
	NALIDR      NALType = 5  // coded slice of an IDR picture
	NALSEI      NALType = 6  // supplemental enhancement information
	NALSPS      NALType = 7  // sequence parameter set
	NALPPS      NALType = 8  // picture parameter set
	NALAUD      NALType = 9  // access unit delimiter
	NALEndSeq   NALType = 10 // end of sequence
	NALEndStrm  NALType = 11 // end of stream
	NALFiller   NALType = 12 // filler data
	NALSPSExt   NALType = 13 // sequence parameter set extension
	NALPrefix   NALType = 14 // prefix NAL unit (SVC)
	NALSubSPS   NALType = 15 // subset sequence parameter set
	NALSliceAux NALType = 19 // auxiliary coded picture slice
)

var typeNames = [...]string{
	0: "unspecified", 1: "slice", 2: "slice-A", 3: "slice-B", 4: "slice-C", 5: "IDR", 6: "SEI",
	7: "SPS", 8: "PPS", 9: "AUD", 10: "end-of-seq", 11: "end-of-stream", 12: "filler",
	13: "SPS-ext", 14: "prefix", 15: "subset-SPS", 19: "aux-slice", 20: "slice-ext",
}

// String returns the short name of the NAL type, e.g. "IDR".
func (t NALType) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "reserved"
}

// TypeOf returns the type of a NAL unit (without start code). An empty unit is type 0.
func TypeOf(nal []byte) NALType {
	if len(nal) == 0 {
		return 0
	}
	return NALType(nal[0] & 0x1f)
}

// NALUnits iterates over the NAL units of an Annex-B byte stream, without start codes and
// without the trailing zero bytes that precede the next start code. It does not allocate.
// Data before the first start code is yielded as a unit too, so that a stream that lost its
// first start code is not silently dropped.
func NALUnits(stream []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		first := indexStartCode(stream, 0)
		if first < 0 {
			if nal := trimTrailingZeros(stream); len(nal) > 0 {
				yield(nal) // as the lead below: zero padding alone is no NAL unit
			}
			return
		}
		if lead := trimTrailingZeros(stream[:first]); len(lead) > 0 {
			if !yield(lead) {
				return
			}
		}
		start := first + 3
		for start < len(stream) {
			next := indexStartCode(stream, start)
			end := len(stream)
			if next >= 0 {
				end = next
			}
			if nal := trimTrailingZeros(stream[start:end]); len(nal) > 0 {
				if !yield(nal) {
					return
				}
			}
			if next < 0 {
				return
			}
			start = next + 3
		}
	}
}

// Split returns the NAL units of an Annex-B stream as sub-slices of stream.
func Split(stream []byte) [][]byte {
	var out [][]byte
	for nal := range NALUnits(stream) {
		out = append(out, nal)
	}
	return out
}

var startCode3 = []byte{0, 0, 1}

// indexStartCode returns the offset of the next three-byte start code 00 00 01 at or after from.
func indexStartCode(b []byte, from int) int {
	i := bytes.Index(b[from:], startCode3)
	if i < 0 {
		return -1
	}
	return from + i
}

// trimTrailingZeros drops trailing_zero_8bits (and the leading zero of a four-byte start code).
func trimTrailingZeros(nal []byte) []byte {
	for len(nal) > 0 && nal[len(nal)-1] == 0 {
		nal = nal[:len(nal)-1]
	}
	return nal
}

// IsKeyframe reports whether an Annex-B access unit holds an IDR slice (NAL type 5).
// It deliberately ignores container "delta unit" flags, which some sources get wrong.
// It reads only NAL headers up to the first slice, not the slice data.
func IsKeyframe(au []byte) bool {
	for t := range nalTypes(au) {
		switch t {
		case NALIDR:
			return true
		case NALSlice, NALSliceA:
			// The first VCL NAL decides: an access unit does not mix IDR and non-IDR slices.
			return false
		}
	}
	return false
}

// nalTypes iterates over the NAL unit types of an Annex-B stream, jumping from start code to
// start code without looking for the end of each unit.
func nalTypes(stream []byte) iter.Seq[NALType] {
	return func(yield func(NALType) bool) {
		for i := indexStartCode(stream, 0); i >= 0 && i+3 < len(stream); i = indexStartCode(stream, i+3) {
			if !yield(TypeOf(stream[i+3:])) {
				return
			}
		}
	}
}

// ParamSets returns the first SPS and PPS found in an Annex-B access unit (nil when absent).
// The returned slices alias au.
func ParamSets(au []byte) (sps, pps []byte) {
	for nal := range NALUnits(au) {
		switch TypeOf(nal) {
		case NALSPS:
			if sps == nil {
				sps = nal
			}
		case NALPPS:
			if pps == nil {
				pps = nal
			}
		}
		if sps != nil && pps != nil {
			break
		}
	}
	return sps, pps
}

// HasParamSets reports whether the access unit carries both an SPS and a PPS in-band.
func HasParamSets(au []byte) bool {
	sps, pps := ParamSets(au)
	return sps != nil && pps != nil
}

// AnnexBToAVCC converts an Annex-B access unit into AVCC form (4-byte big-endian lengths),
// appending to dst.
func AnnexBToAVCC(dst, au []byte) []byte {
	for nal := range NALUnits(au) {
		n := len(nal)
		dst = append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		dst = append(dst, nal...)
	}
	return dst
}

// AVCCToAnnexB converts an AVCC access unit with 4-byte lengths into Annex-B, appending to dst.
// It returns an error when a length runs past the end of the data.
func AVCCToAnnexB(dst, avcc []byte) ([]byte, error) {
	for len(avcc) > 0 {
		if len(avcc) < 4 {
			return dst, errTruncated
		}
		n := int(avcc[0])<<24 | int(avcc[1])<<16 | int(avcc[2])<<8 | int(avcc[3])
		avcc = avcc[4:]
		if n > len(avcc) || n < 0 {
			return dst, errTruncated
		}
		dst = append(dst, 0, 0, 0, 1)
		dst = append(dst, avcc[:n]...)
		avcc = avcc[n:]
	}
	return dst, nil
}
