package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAnalysisSourceValidation(t *testing.T) {
	dir := t.TempDir()
	clip := filepath.Join(dir, "sub.mp4")
	require.NoError(t, os.WriteFile(clip, []byte("x"), 0o600))
	tests := []struct {
		name   string
		source string
		want   []string // nil: valid
	}{
		{"empty analyses the main stream", "", nil},
		{"rtsp substream", "rtsp://admin:hunter2@192.168.1.20:554/stream2", nil},
		{"rtsps substream", "rtsps://cam.local/sub", nil},
		{"device", "/dev/video1", nil},
		{"device URI", "v4l2:///dev/video1", nil},
		{"file path", clip, nil},
		{"file URI", "file://" + clip, nil},
		{"rtsp without host, password hidden", "rtsp://admin:hunter2@/sub", []string{`media.analysis.source: "rtsp://admin:***@/sub" has no host`}},
		{"http camera", "http://admin:hunter2@cam/snapshot", []string{`media.analysis.source: "http://admin:***@cam/snapshot" is not supported: use an rtsp:// URL`}},
		{"missing file", filepath.Join(dir, "none.mp4"), []string{"media.analysis.source: stat " + filepath.Join(dir, "none.mp4") + ": no such file or directory — use an rtsp:// URL"}},
		{"directory", dir, []string{"media.analysis.source: " + dir + " is a directory; name a video file"}},
		{"device URI without device", "v4l2://", []string{`media.analysis.source: "v4l2://" names no device`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.Media.Analysis.Source = tt.source
			var got []string
			for _, p := range cfg.Validate() {
				got = append(got, p.String())
			}
			require.Len(t, got, len(tt.want), "problems: %v", got)
			for i, w := range tt.want {
				require.Contains(t, got[i], w)
				require.NotContains(t, got[i], "hunter2")
			}
		})
	}
}

func TestAnalysisDecoderValidation(t *testing.T) {
	for _, tt := range []struct {
		decoder string
		ok      bool
	}{{"auto", true}, {"software", true}, {"openh264", true}, {"v4l2", true}, {"ffmpeg", false}, {"", false}} {
		t.Run(tt.decoder, func(t *testing.T) {
			cfg := Default()
			cfg.Media.Analysis.Decoder = tt.decoder
			ps := cfg.Validate()
			if tt.ok {
				require.Empty(t, ps)
				return
			}
			require.Len(t, ps, 1)
			require.Equal(t, "media.analysis.decoder", ps[0].Key)
			require.Contains(t, ps[0].Msg, "use one of auto, software, openh264, v4l2")
		})
	}
}
