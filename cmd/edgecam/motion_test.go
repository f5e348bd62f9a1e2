package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/stretchr/testify/require"
)

// TestMotionEvalSuite runs `edgecam motion eval --suite` on a folder of two outdoor clips,
// as a table, as JSON and with one SVG per clip, and checks its bad-flag messages.
func TestMotionEvalSuite(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{testclip.OutdoorSway, testclip.OutdoorCat} {
		clip, _ := testclip.Path(t, name)
		require.NoError(t, os.Symlink(clip, filepath.Join(dir, name+".mp4")))
		require.NoError(t, os.Symlink(strings.TrimSuffix(clip, ".mp4")+".json", filepath.Join(dir, name+".json")))
	}
	svgDir := filepath.Join(t.TempDir(), "svg")
	out, err := exec.Command(binary, "motion", "eval", "--suite", dir, "--svg", svgDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	text := string(out)
	require.Contains(t, text, "latency")
	require.Regexp(t, `outdoor-sway\s+0\s`, text, "no event on the swaying camera")
	require.Regexp(t, `outdoor-cat\s+1\s+1\.00\s+1\.00`, text, "the cat is found")
	for _, name := range []string{testclip.OutdoorSway, testclip.OutdoorCat} {
		svg, err := os.ReadFile(filepath.Join(svgDir, name+".svg"))
		require.NoError(t, err)
		require.Contains(t, string(svg), "motion score")
	}

	out, err = exec.Command(binary, "motion", "eval", "--suite", dir, "--json").Output()
	require.NoError(t, err)
	var clips []struct {
		Video  string `json:"video"`
		Events []struct {
			Start   float64  `json:"start"`
			End     float64  `json:"end"`
			Latency *float64 `json:"latency"`
		} `json:"events"`
		FramePrecision *float64 `json:"framePrecision"`
		FrameRecall    *float64 `json:"frameRecall"`
		FrameFPRate    *float64 `json:"frameFalsePositiveRate"`
		BytesKept      float64  `json:"bytesKept"`
	}
	require.NoError(t, json.Unmarshal(out, &clips), "%s", out)
	require.Len(t, clips, 2)
	cat := clips[0]
	require.Contains(t, cat.Video, testclip.OutdoorCat)
	require.Len(t, cat.Events, 1)
	require.NotNil(t, cat.Events[0].Latency)
	require.LessOrEqual(t, *cat.Events[0].Latency, 0.6)
	require.NotNil(t, cat.FrameRecall)
	require.Less(t, cat.BytesKept, 0.7)

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"motion", "eval"}, "--video or --suite is required"},
		{[]string{"motion", "eval", "--suite", dir, "--video", "x.mp4"}, "exclude each other"},
		{[]string{"motion", "eval", "--suite", dir, "--labels", "x.json"}, "NAME.json sidecar"},
		{[]string{"motion", "eval", "--suite", t.TempDir()}, "holds no video"},
	} {
		out, err := exec.Command(binary, tt.args...).CombinedOutput()
		require.Error(t, err, "%v", tt.args)
		require.Contains(t, string(out), tt.want, "%v", tt.args)
	}
}
