package media

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// ErrNotEncoding is returned by the encoder controls when the source is passed through:
// its bitrate and frame rate are the camera's.
var ErrNotEncoding = errors.New("the source is passed through (no encoder to control)")

// minKeyframeInterval rate-limits keyframe requests (viewers' PLI/FIR can come in floods).
const minKeyframeInterval = 500 * time.Millisecond

// Encoding reports whether the agent encodes (and so can change bitrate and frame rate).
func (s *Source) Encoding() bool { return s.opts.Plan.Encode != EncodePassthrough }

// SetBitrate changes the encoder's target bitrate at run time; it survives pipeline
// restarts. For a passed-through source it logs why nothing changes and returns
// ErrNotEncoding.
func (s *Source) SetBitrate(kbps int) error {
	if !s.Encoding() {
		s.log.Debug("bitrate unchanged: the source is passed through", zap.Int("asked_kbps", kbps))
		return ErrNotEncoding
	}
	if kbps < 50 || kbps > 50000 {
		return fmt.Errorf("bitrate %d kbit/s is out of range (50 to 50000)", kbps)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bitrate == kbps {
		return nil
	}
	s.bitrate = kbps
	return s.applyBitrateLocked()
}

// SetFramerate changes the encoded frame rate at run time (frames are dropped before the
// encoder; the GOP keeps its length in seconds). Passed-through sources: ErrNotEncoding.
func (s *Source) SetFramerate(fps int) error {
	if !s.Encoding() {
		s.log.Debug("frame rate unchanged: the source is passed through", zap.Int("asked_fps", fps))
		return ErrNotEncoding
	}
	max := s.opts.Plan.Source.Framerate
	if fps < 1 || fps > max {
		return fmt.Errorf("frame rate %d is out of range (1 to the source's %d)", fps, max)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fps == fps {
		return nil
	}
	s.fps = fps
	return s.applyFramerateLocked()
}

// Bitrate and Framerate return the encoder settings in force.
func (s *Source) Bitrate() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bitrate
}

// Framerate returns the encoded frame rate in force.
func (s *Source) Framerate() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fps
}

// ForceKeyframe asks the encoder for an IDR with SPS/PPS on its next frame, at most once per
// 500 ms. Passed-through sources: ErrNotEncoding (the camera decides).
func (s *Source) ForceKeyframe() error {
	if !s.Encoding() {
		return ErrNotEncoding
	}
	s.mu.Lock()
	p := s.pipeline
	if p == nil || time.Since(s.lastForce) < minKeyframeInterval {
		s.mu.Unlock()
		return nil
	}
	s.lastForce = time.Now()
	s.mu.Unlock()
	return p.ForceKeyUnit(VideoSink)
}

// applyControlsLocked sets the controls in force on a new pipeline.
func (s *Source) applyControlsLocked() {
	if !s.Encoding() {
		return
	}
	if s.bitrate != s.opts.Plan.Encoder.BitrateKbps {
		if err := s.applyBitrateLocked(); err != nil {
			s.log.Warn("bitrate not applied", zap.Error(err))
		}
	}
	if s.fps != s.opts.Plan.Source.Framerate {
		if err := s.applyFramerateLocked(); err != nil {
			s.log.Warn("frame rate not applied", zap.Error(err))
		}
	}
}

func (s *Source) applyBitrateLocked() error {
	if s.pipeline == nil {
		return nil // applied when the pipeline starts
	}
	switch s.opts.Plan.Encode {
	case EncodeX264:
		return s.pipeline.SetProperty(EncoderName, "bitrate", s.bitrate)
	case EncodeV4L2:
		return s.pipeline.SetProperty(EncoderName, "extra-controls", V4L2Controls(s.bitrate, s.opts.Plan.keyInt()))
	}
	return ErrNotEncoding
}

func (s *Source) applyFramerateLocked() error {
	if s.pipeline == nil {
		return nil
	}
	return s.pipeline.SetProperty(RateCaps, "caps", fmt.Sprintf("video/x-raw,framerate=%d/1", s.fps))
}
