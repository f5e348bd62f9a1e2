// Package rtspingest reads an H.264 RTSP camera with an RTSP client written in Go
// (gortsplib) and publishes its access units to the media Hub, without GStreamer: for a
// stream that is passed through, GStreamer's rtspsrc, jitter buffer, depayloader and parser,
// and the cgo crossing of every access unit, cost more CPU than relaying the stream to the
// viewers does. It supervises the session as media.Source does its pipeline: a lost,
// refused or stalled session is opened again with jittered exponential back-off, and the
// timeline stays continuous across sessions.
package rtspingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/backoff"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/pion/rtp"
	"go.uber.org/zap"
)

// Transports.
const (
	TransportTCP  = "tcp"  // RTP interleaved in the RTSP connection
	TransportUDP  = "udp"  // RTP over UDP
	TransportAuto = "auto" // UDP, then TCP when no UDP packet arrives
)

// errStalled ends a session that delivered no access unit for the stall timeout.
var errStalled = errors.New("no frame from the camera")

// Options configure a Source.
type Options struct {
	// URL is rtsp://[user:password@]host[:port]/path. The password never reaches a log.
	URL string
	// Transport is tcp (the default), udp or auto.
	Transport string
	Hub       *media.Hub
	Log       *zap.Logger
	// StallTimeout reconnects when no access unit arrived for this long (0: 5 s; twice
	// that for the first one of a session).
	StallTimeout time.Duration
	// MaxBackoff bounds the wait between reconnections (0: 30 s).
	MaxBackoff time.Duration
	// BitrateKbps and Framerate are what Bitrate and Framerate report: the camera's, as
	// configured (a passed-through stream has no encoder to ask).
	BitrateKbps, Framerate int
}

// Source reads one RTSP camera into the Hub. Its methods match media.Source's, so the
// agent can run either.
type Source struct {
	opts   Options
	url    *base.URL
	log    *zap.Logger
	frames chan media.Frame

	mu        sync.Mutex
	base      time.Duration // timeline position where the current session started
	end       time.Duration // timeline position just after the newest unit
	started   bool          // the current session has published a unit
	lastTS    uint32        // RTP timestamp of the newest unit
	ext       int64         // newest unit's RTP time since the session's first, in 90 kHz ticks
	prevPTS   time.Duration
	dur       time.Duration // interval between the two newest units
	lastFrame time.Time
	runStart  time.Time
	sps       []byte
	count     uint64
	restarts  int
	lost      uint64
	lastErr   error
}

// New checks the options and returns a Source; nothing connects until Run.
func New(opts Options) (*Source, error) {
	if opts.Hub == nil {
		return nil, errors.New("rtspingest: no Hub to publish to")
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	switch opts.Transport {
	case "":
		opts.Transport = TransportTCP
	case TransportTCP, TransportUDP, TransportAuto:
	default:
		return nil, fmt.Errorf("RTSP transport %q is not supported: use tcp, udp or auto", opts.Transport)
	}
	u, err := ParseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	return &Source{opts: opts, url: u, log: opts.Log, frames: make(chan media.Frame)}, nil
}

// ParseURL checks an RTSP address: rtsp://[user:password@]host[:port]/path. Its errors
// never show the password.
func ParseURL(s string) (*base.URL, error) {
	const want = "expected rtsp://[user:password@]host[:port]/path"
	if scheme, _, ok := strings.Cut(s, "://"); ok && !strings.EqualFold(scheme, "rtsp") {
		return nil, fmt.Errorf("RTSP URL %s: the Go RTSP client reads rtsp:// addresses only (%s:// is not supported) — %s", config.RedactURL(s), scheme, want)
	}
	u, err := base.ParseURL(s)
	if err != nil {
		return nil, fmt.Errorf("RTSP URL %s: %s — %s", config.RedactURL(s), config.RedactURL(err.Error()), want)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("RTSP URL %s has no host — %s", config.RedactURL(s), want)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("RTSP URL %s: port %s is not a port number (1 to 65535) — %s", config.RedactURL(s), p, want)
		}
	}
	return u, nil
}

// Description says what reads the camera, with the URL's password redacted.
func (s *Source) Description() string {
	return fmt.Sprintf("Go RTSP client (gortsplib): %s over %s", config.RedactURL(s.opts.URL), strings.ToUpper(s.opts.Transport))
}

// Frames delivers analysis frames; this source decodes nothing, so none ever arrive: motion
// analysis of its stream decodes the hub's access units (media.AnalysisUnits).
func (s *Source) Frames() <-chan media.Frame { return s.frames }

// Encoding is false: the camera's stream is passed through.
func (s *Source) Encoding() bool { return false }

// SetBitrate returns media.ErrNotEncoding: the camera decides.
func (s *Source) SetBitrate(int) error { return media.ErrNotEncoding }

// SetFramerate returns media.ErrNotEncoding: the camera decides.
func (s *Source) SetFramerate(int) error { return media.ErrNotEncoding }

// ForceKeyframe returns media.ErrNotEncoding: the camera decides.
func (s *Source) ForceKeyframe() error { return media.ErrNotEncoding }

// Bitrate returns the configured bitrate (the camera's).
func (s *Source) Bitrate() int { return s.opts.BitrateKbps }

// Framerate returns the configured frame rate (the camera's).
func (s *Source) Framerate() int { return s.opts.Framerate }

// SPS returns the newest sequence parameter set seen (nil before the first keyframe).
func (s *Source) SPS() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.sps...)
}

// Stats returns the access units published and the reconnections so far.
func (s *Source) Stats() (frames uint64, restarts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.restarts
}

// FrameCount returns how many access units the source has published.
func (s *Source) FrameCount() uint64 {
	f, _ := s.Stats()
	return f
}

// LastFrame returns when the newest access unit arrived (zero before the first).
func (s *Source) LastFrame() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == 0 {
		return time.Time{}
	}
	return s.lastFrame
}

// LostPackets returns how many RTP packets never arrived.
func (s *Source) LostPackets() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// LastError returns why the newest session failed or ended (nil while none has).
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Run reads the camera until ctx ends (nil). A session that cannot open, fails or stalls is
// logged and opened again with jittered exponential back-off.
func (s *Source) Run(ctx context.Context) error {
	failures := 0
	for {
		started := time.Now()
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > 2*s.opts.MaxBackoff {
			failures = 0 // it ran well for a while: start the back-off again
		}
		failures++
		wait := backoff.Delay(time.Second, s.opts.MaxBackoff, failures)
		s.mu.Lock()
		s.restarts++
		s.lastErr = err
		n := s.restarts
		s.mu.Unlock()
		s.log.Warn("RTSP session stopped; reconnecting", zap.String("reason", errString(err)),
			zap.Duration("in", wait), zap.Int("restarts", n))
		s.opts.Hub.Discontinuity()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ended"
	}
	return err.Error()
}

// runOnce runs one RTSP session: DESCRIBE, SETUP of the H.264 media, PLAY, then packets
// until the session fails, stalls or ctx ends.
func (s *Source) runOnce(ctx context.Context) error {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	d := &depacketizer{}
	c := &gortsplib.Client{
		Scheme:      s.url.Scheme,
		Host:        s.url.Host,
		ReadTimeout: max(s.opts.StallTimeout, 5*time.Second),
		// gortsplib counts lost packets; the depacketizer sees the gaps itself.
		OnPacketsLost: func(uint64) {},
		OnTransportSwitch: func(err error) {
			s.log.Info("RTSP transport switched", zap.String("reason", config.RedactURL(err.Error())))
		},
		OnDecodeError: func(err error) {
			s.log.Debug("RTP packet not read", zap.String("reason", config.RedactURL(err.Error())))
		},
	}
	switch s.opts.Transport {
	case TransportTCP:
		p := gortsplib.ProtocolTCP
		c.Protocol = &p
	case TransportUDP:
		p := gortsplib.ProtocolUDP
		c.Protocol = &p
	}
	if err := c.Start(); err != nil {
		return s.explain(err)
	}
	defer c.Close()
	stop := context.AfterFunc(runCtx, c.Close) // ends a request under way
	defer stop()

	s.mu.Lock()
	s.base, s.started, s.runStart = s.end, false, time.Now()
	s.mu.Unlock()
	go s.watch(runCtx, cancel)

	desc, _, err := c.Describe(s.url)
	if err != nil {
		return s.sessionErr(runCtx, err)
	}
	var forma *format.H264
	medi := desc.FindFormat(&forma)
	if medi == nil {
		var offered []string
		for _, m := range desc.Medias {
			for _, f := range m.Formats {
				offered = append(offered, f.RTPMap())
			}
		}
		return fmt.Errorf("RTSP %s offers no H.264 video (it offers: %s); the Go RTSP client reads H.264 only",
			config.RedactURL(s.opts.URL), strings.Join(offered, ", "))
	}
	if forma.PacketizationMode > 1 {
		return fmt.Errorf("RTSP %s sends H.264 in the interleaved packetization mode (2), which is not supported",
			config.RedactURL(s.opts.URL))
	}
	d.setParams(forma.SPS, forma.PPS) // sprop-parameter-sets: put in front of keyframes that lack them
	d.emit = s.publish
	d.onLoss = func(err error) {
		s.log.Debug("video lost until the next keyframe", zap.Error(err))
		s.opts.Hub.Discontinuity()
	}
	s.opts.Hub.Discontinuity() // a new session starts at a keyframe
	if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		return s.sessionErr(runCtx, err)
	}
	c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		before := d.lost
		d.push(pkt)
		if d.lost != before {
			s.mu.Lock()
			s.lost += d.lost - before
			s.mu.Unlock()
		}
	})
	if _, err := c.Play(nil); err != nil {
		return s.sessionErr(runCtx, err)
	}
	transport := "?"
	if t := c.Transport(); t != nil && t.Session != nil {
		transport = t.Session.Protocol.String()
	}
	s.log.Info("RTSP session playing", zap.String("url", config.RedactURL(s.opts.URL)), zap.String("transport", transport))
	return s.sessionErr(runCtx, c.Wait())
}

// sessionErr says why a session ended: the stall watch, or the client's error explained.
func (s *Source) sessionErr(runCtx context.Context, err error) error {
	if cause := context.Cause(runCtx); errors.Is(cause, errStalled) {
		return fmt.Errorf("%w for %s", errStalled, s.opts.StallTimeout)
	}
	if runCtx.Err() != nil {
		return nil
	}
	return s.explain(err)
}

// explain turns the client's errors into what to fix.
func (s *Source) explain(err error) error {
	u := config.RedactURL(s.opts.URL)
	var status liberrors.ErrClientBadStatusCode
	if errors.As(err, &status) {
		switch status.Code {
		case base.StatusUnauthorized:
			if s.url.User == nil {
				return fmt.Errorf("RTSP %s: the camera asks for a user and password (401 Unauthorized): put them in the URL, rtsp://user:password@host/path", u)
			}
			return fmt.Errorf("RTSP %s: the camera refused the user and password (401 Unauthorized): check them in the URL", u)
		case base.StatusNotFound:
			return fmt.Errorf("RTSP %s: the camera has no stream at this path (404 Not Found): check the URL's path", u)
		}
		return fmt.Errorf("RTSP %s: the camera answered %d %s", u, status.Code, status.Message)
	}
	return fmt.Errorf("RTSP %s: %s", u, config.RedactURL(err.Error()))
}

// watch ends the session when no access unit arrived for the stall timeout (twice that
// for the first one: cameras take a moment to start a session).
func (s *Source) watch(ctx context.Context, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(min(s.opts.StallTimeout/4, 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		limit, since := s.opts.StallTimeout, s.lastFrame
		if !s.started {
			limit, since = 2*limit, s.runStart
		}
		stalled := time.Since(since) > limit
		s.mu.Unlock()
		if stalled {
			cancel(errStalled)
			return
		}
	}
}

// publish hands one access unit to the Hub. It runs on the client's reading goroutine; au
// is the depacketizer's buffer, so it is copied once, to its exact size, and the copy's
// ownership passes to the Hub (the ring holds seconds of units: no spare capacity).
func (s *Source) publish(au []byte, ts uint32, keyframe bool) {
	now := time.Now()
	data := make([]byte, len(au))
	copy(data, au)
	s.mu.Lock()
	if !s.started {
		s.started, s.ext, s.dur = true, 0, 0
	} else {
		s.ext += int64(int32(ts - s.lastTS)) // wraps every 13 h at 90 kHz
	}
	s.lastTS = ts
	pts := s.base + time.Duration(s.ext)*time.Second/90000
	if s.count > 0 && pts > s.prevPTS && pts-s.prevPTS < time.Second {
		s.dur = pts - s.prevPTS
	}
	s.prevPTS = pts
	s.end = max(s.end, pts+s.dur)
	s.count++
	s.lastFrame = now
	if keyframe {
		s.noteParamSetsLocked(data)
	}
	unit := media.AccessUnit{Data: data, PTS: pts, DTS: pts, Duration: s.dur, Keyframe: keyframe, Wall: now}
	s.mu.Unlock()
	s.opts.Hub.Publish(unit)
}

// noteParamSetsLocked logs the stream's format whenever its SPS changes.
func (s *Source) noteParamSetsLocked(au []byte) {
	sps, _ := h264.ParamSets(au)
	if sps == nil {
		s.log.Warn("keyframe without SPS/PPS, in-band or in the SDP: viewers joining now cannot decode it")
		return
	}
	if string(sps) == string(s.sps) {
		return
	}
	s.sps = append(s.sps[:0], sps...)
	info, err := h264.ParseSPS(sps)
	if err != nil {
		s.log.Warn("unreadable SPS", zap.Error(err))
		return
	}
	s.log.Info("video stream", zap.String("size", fmt.Sprintf("%dx%d", info.Width, info.Height)),
		zap.String("codec", info.Codec()), zap.Float64("fps", info.FrameRate), zap.String("encoder", "passthrough"),
		zap.String("client", "go"))
}
