package motioneval

import (
	"context"
	"testing"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/stretchr/testify/require"
)

// TestEvalIgnoresAnalysisSource: a configuration whose motion analysis reads a camera's
// substream (media.analysis.source) still evaluates the given file (it got no analysis
// frame at all before).
func TestEvalIgnoresAnalysisSource(t *testing.T) {
	path, side := testclip.Path(t, testclip.Ball)
	cfg := config.Default()
	cfg.Media.Analysis.Source = "rtsp://cam.invalid/stream2"
	r, err := Run(context.Background(), Options{Video: path, Config: cfg}, labelsOf(side))
	require.NoError(t, err)
	require.NotEmpty(t, r.Frames)
	require.Equal(t, 1.0, r.Recall, "missed %v", r.Missed)
}
