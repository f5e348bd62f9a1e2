package media

import (
	"context"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/stretchr/testify/require"
)

func TestAnalysisFrames(t *testing.T) {
	tests := []struct {
		name    string
		adjust  func(m *config.Media)
		wantFPS float64
	}{
		{"raw source at 5 fps", func(m *config.Media) {}, 5},
		{"smaller frames at 2 fps", func(m *config.Media) { m.Analysis.Width, m.Analysis.Height, m.Analysis.Framerate = 160, 90, 2 }, 2},
		{"H.264 source, keyframes only", func(m *config.Media) {
			m.Source = config.Source{Kind: config.SourceCustom, Format: config.FormatH264, Width: 640, Height: 360, Framerate: 30,
				Pipeline: "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 ! x264enc tune=zerolatency key-int-max=15 bframes=0"}
			m.Analysis.KeyframesOnly = true
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := config.Default().Media
			m.Source.Kind = config.SourceTest
			m.Source.Width, m.Source.Height, m.Source.Framerate = 640, 360, 30
			tt.adjust(&m)
			plan, err := ResolvePlan(m, gst.Probe{})
			require.NoError(t, err)
			src, err := NewSource(SourceOptions{Plan: plan, Hub: NewHub(HubOptions{})})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx) }()
			defer func() { cancel(); <-done }()

			var frames []Frame
			deadline := time.After(4 * time.Second)
			start := time.Now()
		collect:
			for {
				select {
				case f := <-src.Frames():
					frames = append(frames, f)
				case <-deadline:
					break collect
				}
			}
			elapsed := time.Since(start).Seconds()
			require.NotEmpty(t, frames)
			for _, f := range frames {
				require.Equal(t, m.Analysis.Width, f.Width)
				require.Equal(t, m.Analysis.Height, f.Height)
				require.Len(t, f.Data, f.Width*f.Height, "GRAY8, one byte a pixel")
			}
			require.InDelta(t, tt.wantFPS, float64(len(frames))/elapsed, tt.wantFPS*0.5+0.5)
		})
	}
}
