package rtspingest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/edgecam/edgecam/internal/rtsptest"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/stretchr/testify/require"
)

// encodeClip encodes a short test pattern with x264 (a real encoder, 30 fps, a keyframe
// every gop frames) into access units, as rtsptest serves them. src is the pattern and
// the raw caps, e.g. "pattern=ball ! video/x-raw,width=320,height=180".
func encodeClip(t testing.TB, frames, gop int, src string) []rtsptest.AccessUnit {
	t.Helper()
	p, err := gst.Parse(fmt.Sprintf("videotestsrc num-buffers=%d %s,framerate=30/1 ! "+
		"x264enc tune=zerolatency bframes=0 key-int-max=%d speed-preset=ultrafast ! h264parse config-interval=-1 ! "+
		"video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false", frames, src, gop), gst.Options{Name: "clip"})
	require.NoError(t, err)
	var (
		mu  sync.Mutex
		aus []rtsptest.AccessUnit
	)
	require.NoError(t, p.OnSample("out", func(s gst.Sample) {
		mu.Lock()
		defer mu.Unlock()
		aus = append(aus, rtsptest.AccessUnit{NALUs: h264.Split(s.Data), PTS: s.PTS})
	}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.ErrorIs(t, p.Run(ctx), gst.ErrEOS)
	require.Len(t, aus, frames)
	base := aus[0].PTS
	for i := range aus {
		aus[i].PTS -= base
	}
	return aus
}

// withoutParamSets drops SPS and PPS from every access unit: a camera that sends them only
// in the SDP (sprop-parameter-sets).
func withoutParamSets(clip []rtsptest.AccessUnit) (out []rtsptest.AccessUnit, sps, pps []byte) {
	for _, au := range clip {
		var kept [][]byte
		for _, n := range au.NALUs {
			switch h264.TypeOf(n) {
			case h264.NALSPS:
				sps = n
			case h264.NALPPS:
				pps = n
			default:
				kept = append(kept, n)
			}
		}
		out = append(out, rtsptest.AccessUnit{NALUs: kept, PTS: au.PTS})
	}
	return out, sps, pps
}

// camera is a real RTSP server (gortsplib) for the cases rtsptest does not cover: a user
// and password, UDP transport, parameter sets in the SDP only.
type camera struct {
	user, pass string
	srv        *gortsplib.Server
	stream     *gortsplib.ServerStream
	url        string
	cancel     context.CancelFunc
	done       chan struct{}
}

type cameraOptions struct {
	user, pass string
	udp        bool
	sps, pps   []byte // sprop-parameter-sets
	h265       bool   // offer H.265 instead (sends nothing)
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startCamera(t testing.TB, clip []rtsptest.AccessUnit, o cameraOptions) *camera {
	t.Helper()
	c := &camera{user: o.user, pass: o.pass, done: make(chan struct{})}
	port := freePort(t)
	c.srv = &gortsplib.Server{Handler: c, RTSPAddress: fmt.Sprintf("127.0.0.1:%d", port)}
	if o.udp {
		rtpPort := freePort(t) &^ 1
		c.srv.UDPRTPAddress, c.srv.UDPRTCPAddress = fmt.Sprintf("127.0.0.1:%d", rtpPort), fmt.Sprintf("127.0.0.1:%d", rtpPort+1)
	}
	require.NoError(t, c.srv.Start())
	var forma format.Format = &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: o.sps, PPS: o.pps}
	if o.h265 {
		forma = &format.H265{PayloadTyp: 96}
	}
	c.stream = &gortsplib.ServerStream{Server: c.srv, Desc: &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{forma},
	}}}}
	require.NoError(t, c.stream.Initialize())
	c.url = fmt.Sprintf("rtsp://127.0.0.1:%d/stream", port)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.play(ctx, clip)
	t.Cleanup(func() {
		cancel()
		<-c.done
		c.stream.Close()
		c.srv.Close()
	})
	return c
}

// play writes the clip's RTP packets in real time, looping.
func (c *camera) play(ctx context.Context, clip []rtsptest.AccessUnit) {
	defer close(c.done)
	medi := c.stream.Desc.Medias[0]
	h, ok := medi.Formats[0].(*format.H264)
	if !ok {
		<-ctx.Done()
		return
	}
	enc, err := h.CreateEncoder()
	if err != nil {
		panic(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	rtpBase := binary.BigEndian.Uint32(b[:])
	period := clip[len(clip)-1].PTS + time.Second/30
	start := time.Now()
	for loop := 0; ; loop++ {
		for _, au := range clip {
			at := time.Duration(loop)*period + au.PTS
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(at))):
			}
			pkts, err := enc.Encode(au.NALUs)
			if err != nil {
				panic(err)
			}
			for _, p := range pkts {
				p.Timestamp = rtpBase + uint32(at*90000/time.Second)
				_ = c.stream.WritePacketRTP(medi, p)
			}
		}
	}
}

func (c *camera) authorized(conn *gortsplib.ServerConn, req *base.Request) bool {
	return c.user == "" || conn.VerifyCredentials(req, c.user, c.pass)
}

func (c *camera) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if !c.authorized(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

func (c *camera) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if !c.authorized(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

func (c *camera) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// runSource runs a Source until the test ends.
func runSource(t testing.TB, o Options) *Source {
	t.Helper()
	if o.Hub == nil {
		o.Hub = media.NewHub(media.HubOptions{})
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = 2 * time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = time.Second
	}
	s, err := New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("Run did not end after its context was cancelled")
		}
	})
	return s
}

// next returns the subscription's next unit, failing the test after within.
func next(t testing.TB, sub *media.Subscription, within time.Duration) media.AccessUnit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	au, err := sub.Next(ctx)
	require.NoError(t, err, "no access unit within %s", within)
	return au
}
