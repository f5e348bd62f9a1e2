package motioneval

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/stretchr/testify/require"
)

func labelsOf(side testclip.Sidecar) []Interval {
	out := []Interval{}
	for _, m := range side.Motion {
		out = append(out, Interval{Start: m.Start, End: m.End})
	}
	return out
}

// TestClipSuite runs the default configuration over the labelled clip suite: every
// labelled motion is recorded from before it starts to after it ends, lighting changes, an
// IR switch and noise make no event, and on the moving-object clip a motion-gated
// recording keeps at most a quarter of the bytes a continuous one would.
func TestClipSuite(t *testing.T) {
	tests := []struct {
		clip         string
		wantEvents   bool
		maxGatedRate float64 // gated/continuous bytes; 0: not checked
	}{
		{testclip.MotionObject, true, 0.25},
		{testclip.MotionSmallSlow, true, 0},
		{testclip.MotionLighting, false, 0},
		{testclip.MotionIRSwitch, false, 0},
		{testclip.MotionNoise, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.clip, func(t *testing.T) {
			path, side := testclip.Path(t, tt.clip)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r, err := Run(ctx, Options{Video: path, Config: config.Default()}, labelsOf(side))
			require.NoError(t, err)
			var text bytes.Buffer
			r.WriteText(&text)
			t.Log("\n" + text.String())
			require.InDelta(t, side.Duration, r.Duration, 0.5)
			require.InDelta(t, 5, r.AnalysisFPS, 0.5, "every analysis frame is looked at")
			if !tt.wantEvents {
				require.Empty(t, r.Events, "no event without motion")
				return
			}
			require.Equal(t, 1.0, r.Recall, "missed %v", r.Missed)
			require.Equal(t, 1.0, r.Precision, "false events %v", r.FalseEvents)
			for _, l := range r.Labels {
				covered := false
				for _, e := range r.Events {
					if e.RecordFrom <= l.Start-2 && e.RecordTo >= l.End {
						covered = true // from its pre-roll to its end
					}
				}
				require.True(t, covered, "label %v", l)
			}
			if tt.maxGatedRate > 0 {
				rate := float64(r.GatedBytes) / float64(r.ContinuousBytes)
				require.LessOrEqual(t, rate, tt.maxGatedRate, "gated %d of %d bytes", r.GatedBytes, r.ContinuousBytes)
			}
		})
	}
}

// TestPaddedAnalysisRows: an analysis width that is not a multiple of 4 gives GStreamer rows
// padded to 4 bytes; motion is still found.
func TestPaddedAnalysisRows(t *testing.T) {
	path, side := testclip.Path(t, testclip.Ball)
	cfg := config.Default()
	cfg.Media.Analysis.Width, cfg.Media.Analysis.Height = 150, 84
	require.Empty(t, cfg.Validate())
	r, err := Run(context.Background(), Options{Video: path, Config: cfg}, labelsOf(side))
	require.NoError(t, err)
	require.NotEmpty(t, r.Frames)
	require.Equal(t, 1.0, r.Recall, "missed %v", r.Missed)
	require.Equal(t, 1.0, r.Precision, "false events %v", r.FalseEvents)
}

func TestSVGAndLabels(t *testing.T) {
	path, side := testclip.Path(t, testclip.Ball)
	r, err := Run(context.Background(), Options{Video: path, Config: config.Default()}, labelsOf(side))
	require.NoError(t, err)
	var svg bytes.Buffer
	require.NoError(t, r.WriteSVG(&svg))
	require.Contains(t, svg.String(), "<svg")
	require.Contains(t, svg.String(), "stroke-dasharray", "the threshold line")
	require.Contains(t, svg.String(), "labelled motion 5.0")
	require.Contains(t, svg.String(), "event 1:")

	dir := t.TempDir()
	sidecarPath := filepath.Join(dir, "side.json")
	require.NoError(t, os.WriteFile(sidecarPath, []byte(`{"file":"x.mp4","motion":[{"start":1,"end":2}]}`), 0o600))
	ls, err := ReadLabels(sidecarPath)
	require.NoError(t, err)
	require.Equal(t, []Interval{{1, 2}}, ls)
	listPath := filepath.Join(dir, "list.json")
	require.NoError(t, os.WriteFile(listPath, []byte(`[]`), 0o600))
	ls, err = ReadLabels(listPath)
	require.NoError(t, err)
	require.Empty(t, ls)
	require.NoError(t, os.WriteFile(listPath, []byte(`{"oops": 1}`), 0o600))
	_, err = ReadLabels(listPath)
	require.ErrorContains(t, err, "want")
}
