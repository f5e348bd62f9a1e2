// Package synth is a GStreamer-free synthetic H.264 source for tests: pion/mediadevices'
// videotest camera encoded by its bundled openh264, published to a media.Hub in real time.
package synth

import (
	"context"
	"fmt"
	"time"

	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/pion/mediadevices"
	"github.com/pion/mediadevices/pkg/codec/openh264"
	_ "github.com/pion/mediadevices/pkg/driver/videotest" // registers the synthetic camera
	"github.com/pion/mediadevices/pkg/frame"
	"github.com/pion/mediadevices/pkg/prop"
	pion "github.com/pion/webrtc/v4"
)

// Size and rate of the synthetic camera (mediadevices' videotest driver has only this mode).
const (
	Width  = 640
	Height = 480
	FPS    = 30
)

// Options configure the encoder.
type Options struct {
	GOP         time.Duration
	BitrateKbps int
}

// Run publishes access units to hub until ctx ends.
func Run(ctx context.Context, hub *media.Hub, o Options) error {
	params, err := openh264.NewParams()
	if err != nil {
		return err
	}
	params.BitRate = o.BitrateKbps * 1000
	params.IntraPeriod = uint(o.GOP.Seconds() * FPS)
	params.KeyFrameInterval = int(params.IntraPeriod)
	sel := mediadevices.NewCodecSelector(mediadevices.WithVideoEncoders(&params))
	stream, err := mediadevices.GetUserMedia(mediadevices.MediaStreamConstraints{
		Video: func(c *mediadevices.MediaTrackConstraints) {
			c.Width = prop.IntExact(Width)
			c.Height = prop.IntExact(Height)
			c.FrameFormat = prop.FrameFormat(frame.FormatYUYV)
		},
		Codec: sel,
	})
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	tracks := stream.GetVideoTracks()
	if len(tracks) == 0 {
		return fmt.Errorf("synth: no video track")
	}
	track := tracks[0]
	defer track.Close()
	reader, err := track.NewEncodedReader(pion.MimeTypeH264)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	defer reader.Close()
	frameDur := time.Second / FPS
	var pts time.Duration
	for ctx.Err() == nil {
		buf, release, err := reader.Read()
		if err != nil {
			return nil
		}
		data := append([]byte(nil), buf.Data...)
		release()
		hub.Publish(media.AccessUnit{Data: data, PTS: pts, DTS: pts, Duration: frameDur, Keyframe: h264.IsKeyframe(data)})
		pts += frameDur
	}
	return nil
}
