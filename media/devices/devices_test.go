package devices

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name string
		cams []Camera
		want []string
	}{
		{"none", nil, []string{"No cameras found", "video group"}},
		{"UVC camera with H.264", []Camera{{Kind: "v4l2", Device: "/dev/video0", Name: "HD Pro Webcam C920", Bus: "usb-0000:01:00.0-1.2", H264: true,
			Modes: []Mode{{Format: "YUYV", Width: 640, Height: 480, FPS: []float32{30, 15}}, {Format: "MJPEG", Width: 1920, Height: 1080, FPS: []float32{30, 24}}}}},
			[]string{"v4l2 camera /dev/video0  HD Pro Webcam C920  (usb-0000:01:00.0-1.2)", "YUYV     640x480   @ 30, 15 fps", "MJPEG   1920x1080  @ 30, 24 fps",
				"passed through without encoding", "media.source: {kind: v4l2, device: /dev/video0, format: h264, width: 1920, height: 1080}"}},
		{"libcamera", []Camera{{Kind: "libcamera", Device: "/base/soc/i2c0mux/imx708@1a", Name: "/base/soc/i2c0mux/imx708@1a"}},
			[]string{`media.source: {kind: libcamera, camera: "/base/soc/i2c0mux/imx708@1a"}`}},
		{"unreadable", []Camera{{Kind: "v4l2", Device: "/dev/video3", Err: "device busy"}},
			[]string{"cannot read its modes: device busy", "media.source: {kind: v4l2, device: /dev/video3, format: raw}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			Write(&b, tt.cams)
			for _, w := range tt.want {
				require.Contains(t, b.String(), w)
			}
		})
	}
}

func TestModesFromCaps(t *testing.T) {
	modes := modesFromCaps([]string{
		"video/x-raw, format=(string)NV12, width=(int)1536, height=(int)864, framerate=(fraction)30/1",
		"video/x-h264, stream-format=(string)byte-stream, width=(int)1920, height=(int)1080",
		"image/jpeg",
	})
	require.Equal(t, []Mode{{Format: "NV12", Width: 1536, Height: 864}, {Format: "H264", Width: 1920, Height: 1080}}, modes)
}

func TestListOnThisMachine(t *testing.T) {
	cams := List()
	for _, c := range cams {
		require.NotEmpty(t, c.Device)
		require.Contains(t, []string{"v4l2", "libcamera"}, c.Kind)
	}
}
