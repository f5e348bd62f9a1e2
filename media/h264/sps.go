package h264

import (
	"errors"
	"fmt"
)

var errTruncated = errors.New("h264: truncated data")

// SPS holds the fields of a sequence parameter set that edgecam uses.
type SPS struct {
	ProfileIDC     uint8
	ConstraintSet  uint8
	LevelIDC       uint8
	ID             uint32
	ChromaFormat   uint32
	Width, Height  int  // displayed size, after cropping
	FrameMBsOnly   bool // progressive
	MaxNumRefFrame uint32
	// FrameRate is time_scale / (2 * num_units_in_tick) when the VUI carries timing; 0 otherwise.
	FrameRate float64
}

// Codec returns the RFC 6381 codec string, e.g. "avc1.42c01f".
func (s SPS) Codec() string {
	return fmt.Sprintf("avc1.%02x%02x%02x", s.ProfileIDC, s.ConstraintSet, s.LevelIDC)
}

// ParseSPS parses an SPS NAL unit (with its one-byte NAL header, without start code).
func ParseSPS(nal []byte) (SPS, error) {
	var s SPS
	if len(nal) < 4 {
		return s, fmt.Errorf("h264: SPS of %d bytes is too short", len(nal))
	}
	if TypeOf(nal) != NALSPS {
		return s, fmt.Errorf("h264: NAL type %d (%s) is not an SPS", TypeOf(nal), TypeOf(nal))
	}
	r := bitReader{b: unescapeRBSP(nal[1:])}
	s.ProfileIDC = uint8(r.bits(8))
	s.ConstraintSet = uint8(r.bits(8))
	s.LevelIDC = uint8(r.bits(8))
	s.ID = r.ue()
	s.ChromaFormat = 1
	separateColourPlane := false
	switch s.ProfileIDC {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		s.ChromaFormat = r.ue()
		if s.ChromaFormat == 3 {
			separateColourPlane = r.flag()
		}
		r.ue() // bit_depth_luma_minus8
		r.ue() // bit_depth_chroma_minus8
		r.flag()
		if r.flag() { // seq_scaling_matrix_present_flag
			n := 8
			if s.ChromaFormat == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if r.flag() {
					size := 16
					if i >= 6 {
						size = 64
					}
					skipScalingList(&r, size)
				}
			}
		}
	}
	r.ue() // log2_max_frame_num_minus4
	switch pocType := r.ue(); pocType {
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.flag()
		r.se()
		r.se()
		n := r.ue()
		if n > 255 {
			return s, fmt.Errorf("h264: SPS num_ref_frames_in_pic_order_cnt_cycle %d out of range", n)
		}
		for i := uint32(0); i < n; i++ {
			r.se()
		}
	}
	s.MaxNumRefFrame = r.ue()
	r.flag() // gaps_in_frame_num_value_allowed_flag
	widthMBs := r.ue() + 1
	heightMapUnits := r.ue() + 1
	s.FrameMBsOnly = r.flag()
	if !s.FrameMBsOnly {
		r.flag() // mb_adaptive_frame_field_flag
	}
	r.flag() // direct_8x8_inference_flag
	var cropL, cropR, cropT, cropB uint32
	if r.flag() {
		cropL, cropR, cropT, cropB = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err != nil {
		return s, fmt.Errorf("h264: SPS: %w", r.err)
	}
	if widthMBs > 1024 || heightMapUnits > 1024 {
		return s, fmt.Errorf("h264: SPS size %dx%d macroblocks out of range", widthMBs, heightMapUnits)
	}
	frameHeightMul := uint32(2)
	if s.FrameMBsOnly {
		frameHeightMul = 1
	}
	cropX, cropY := uint32(1), frameHeightMul
	if !separateColourPlane && s.ChromaFormat != 0 {
		subW, subH := uint32(2), uint32(2)
		switch s.ChromaFormat {
		case 2:
			subH = 1
		case 3:
			subW, subH = 1, 1
		}
		cropX, cropY = subW, subH*frameHeightMul
	}
	w := int(widthMBs*16) - int(cropX*(cropL+cropR))
	h := int(heightMapUnits*16*frameHeightMul) - int(cropY*(cropT+cropB))
	if w <= 0 || h <= 0 {
		return s, fmt.Errorf("h264: SPS cropping leaves %dx%d", w, h)
	}
	s.Width, s.Height = w, h

	if r.flag() { // vui_parameters_present_flag
		s.FrameRate = parseVUIFrameRate(&r)
	}
	return s, nil
}

// parseVUIFrameRate reads the VUI up to its timing info. A malformed VUI yields 0.
func parseVUIFrameRate(r *bitReader) float64 {
	if r.flag() { // aspect_ratio_info_present_flag
		if r.bits(8) == 255 { // Extended_SAR
			r.bits(16)
			r.bits(16)
		}
	}
	if r.flag() { // overscan_info_present_flag
		r.flag()
	}
	if r.flag() { // video_signal_type_present_flag
		r.bits(3)
		r.flag()
		if r.flag() {
			r.bits(24)
		}
	}
	if r.flag() { // chroma_loc_info_present_flag
		r.ue()
		r.ue()
	}
	if !r.flag() { // timing_info_present_flag
		return 0
	}
	units := r.bits(32)
	scale := r.bits(32)
	if r.err != nil || units == 0 {
		return 0
	}
	return float64(scale) / float64(2*units)
}

func skipScalingList(r *bitReader, size int) {
	last, next := int32(8), int32(8)
	for j := 0; j < size; j++ {
		if next != 0 {
			next = (last + r.se() + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}

// unescapeRBSP removes emulation-prevention bytes (00 00 03 → 00 00).
func unescapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

// bitReader reads big-endian bits and Exp-Golomb codes; the first read past the end sets err.
type bitReader struct {
	b   []byte
	pos int // in bits
	err error
}

func (r *bitReader) bits(n int) uint32 {
	var v uint32
	for i := 0; i < n; i++ {
		if r.pos >= len(r.b)*8 {
			r.err = errTruncated
			return 0
		}
		bit := (r.b[r.pos/8] >> (7 - r.pos%8)) & 1
		v = v<<1 | uint32(bit)
		r.pos++
	}
	return v
}

func (r *bitReader) flag() bool { return r.bits(1) == 1 }

// ue reads an unsigned Exp-Golomb code.
func (r *bitReader) ue() uint32 {
	zeros := 0
	for r.bits(1) == 0 {
		if r.err != nil || zeros >= 31 {
			if r.err == nil {
				r.err = errors.New("h264: Exp-Golomb code too long")
			}
			return 0
		}
		zeros++
	}
	return (1<<zeros - 1) + r.bits(zeros)
}

// se reads a signed Exp-Golomb code.
func (r *bitReader) se() int32 {
	k := r.ue()
	if k&1 == 1 {
		return int32((k + 1) / 2)
	}
	return -int32(k / 2)
}
