// Package rtsptest serves an H.264 clip over RTSP from a real RTSP server (gortsplib), in
// real time and looping, for tests of RTSP cameras. The server can be stopped and started
// again on the same port, as a camera that reboots.
package rtsptest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
)

// AccessUnit is one picture of the clip: its NAL units and presentation time.
type AccessUnit struct {
	NALUs [][]byte
	PTS   time.Duration
}

// ReadClip decodes nothing: it demuxes an MP4/Matroska/TS file into H.264 access units.
func ReadClip(path string) ([]AccessUnit, error) {
	p, err := gst.Parse(fmt.Sprintf("filesrc location=%q ! parsebin ! h264parse config-interval=-1 ! "+
		"video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false", path), gst.Options{Name: "rtsptest-read"})
	if err != nil {
		return nil, err
	}
	var (
		mu  sync.Mutex
		aus []AccessUnit
	)
	if err := p.OnSample("out", func(s gst.Sample) {
		mu.Lock()
		defer mu.Unlock()
		aus = append(aus, AccessUnit{NALUs: h264.Split(s.Data), PTS: s.PTS})
	}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Run(ctx); err != gst.ErrEOS {
		return nil, fmt.Errorf("read %s: %v", path, err)
	}
	if len(aus) == 0 {
		return nil, fmt.Errorf("%s has no H.264 video", path)
	}
	base := aus[0].PTS
	for i := range aus {
		aus[i].PTS -= base
	}
	return aus, nil
}

// Server serves one clip at rtsp://127.0.0.1:<port>/stream, looping in real time.
type Server struct {
	clip     []AccessUnit
	duration time.Duration
	addr     string

	mu     sync.Mutex
	srv    *gortsplib.Server
	stream *gortsplib.ServerStream
	stop   context.CancelFunc
	done   chan struct{}
	// Sessions counts PLAY requests served (reconnections show up here).
	sessions int
}

// NewServer prepares a server for the clip on a free port; call Start.
func NewServer(clip []AccessUnit, frameDuration time.Duration) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	return &Server{clip: clip, duration: clip[len(clip)-1].PTS + frameDuration, addr: addr}, nil
}

// URL returns the stream's address.
func (s *Server) URL() string { return "rtsp://" + s.addr + "/stream" }

// Sessions returns how many PLAY requests were served.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// Start listens and starts streaming.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &handler{s: s}
	srv := &gortsplib.Server{Handler: h, RTSPAddress: s.addr}
	if err := srv.Start(); err != nil {
		return err
	}
	stream := &gortsplib.ServerStream{Server: srv, Desc: &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}},
	}}}}
	if err := stream.Initialize(); err != nil {
		srv.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.srv, s.stream, s.stop, s.done = srv, stream, cancel, make(chan struct{})
	go s.play(ctx, stream, s.done)
	return nil
}

// Stop closes the server and every session, as a camera that goes away.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, stream, stop, done := s.srv, s.stream, s.stop, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	stop()
	<-done
	stream.Close()
	srv.Close()
}

// play writes the clip's RTP packets in real time, looping.
func (s *Server) play(ctx context.Context, stream *gortsplib.ServerStream, done chan struct{}) {
	defer close(done)
	media := stream.Desc.Medias[0]
	enc, err := media.Formats[0].(*format.H264).CreateEncoder()
	if err != nil {
		return
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	rtpBase := binary.BigEndian.Uint32(b[:])
	start := time.Now()
	for loop := 0; ; loop++ {
		offset := time.Duration(loop) * s.duration
		for _, au := range s.clip {
			at := start.Add(offset + au.PTS)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			pkts, err := enc.Encode(au.NALUs)
			if err != nil {
				continue
			}
			ts := rtpBase + uint32((offset+au.PTS)*90000/time.Second)
			for _, p := range pkts {
				p.Timestamp = ts
				_ = stream.WritePacketRTP(media, p)
			}
		}
	}
}

type handler struct{ s *Server }

func (h *handler) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, h.s.stream, nil
}

func (h *handler) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, h.s.stream, nil
}

func (h *handler) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	h.s.mu.Lock()
	h.s.sessions++
	h.s.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}
