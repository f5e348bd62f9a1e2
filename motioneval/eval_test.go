package motioneval

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/motion"
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
	for _, part := range []string{"motion score", "time (s)", "warm-up", "strong motion", "marginal motion", "<image", "moving region"} {
		require.Contains(t, svg.String(), part)
	}

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

// TestOutdoorSuite runs the default configuration over the outdoor clips (camera sway, fine
// rain, coarse rain or snow, foliage, headlights at night, cloud shadows, each without and
// with a person crossing; a small distant person; a cat): every labelled interval is
// detected within 0.6 s and recorded from its pre-roll to its end, nothing else makes an
// event, at most 2% of the frames without motion report motion, no event outlasts its
// label by more than the post-roll and the event gap, and a motion-gated recording keeps
// within 10 points of what the labels with their rolls would.
func TestOutdoorSuite(t *testing.T) {
	cfg := config.Default()
	m := cfg.Motion
	for _, clip := range testclip.OutdoorSuite {
		t.Run(clip, func(t *testing.T) {
			path, side := testclip.Path(t, clip)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r, err := Run(ctx, Options{Video: path, Config: cfg}, labelsOf(side))
			require.NoError(t, err)
			var text bytes.Buffer
			r.WriteText(&text)
			t.Log("\n" + text.String())
			require.InDelta(t, side.Duration, r.Duration, 0.5)
			require.LessOrEqual(t, r.FrameFPRate, 0.02, "frame false-positive rate")
			if len(r.Labels) == 0 {
				require.Empty(t, r.Events, "no event without motion")
				return
			}
			require.Empty(t, r.FalseEvents)
			for _, l := range r.Labels {
				covered, detected := false, false
				for _, e := range r.Events {
					if e.RecordFrom <= l.Start-m.PreRoll.Seconds() && e.RecordTo >= l.End {
						covered = true
					}
					if e.Start < l.End && e.End > l.Start {
						detected = true
						require.LessOrEqual(t, e.Start-l.Start, 0.6, "latency of the event for %v", l)
						require.LessOrEqual(t, e.End-e.Start, l.End-l.Start+(m.PostRoll+m.EventGap).Seconds(), "event %v outlasts label %v", e, l)
					}
				}
				require.True(t, detected, "label %v not detected", l)
				require.True(t, covered, "label %v not recorded from its pre-roll to its end", l)
			}
			gated := float64(r.GatedBytes) / float64(r.ContinuousBytes)
			ideal := float64(r.IdealBytes) / float64(r.ContinuousBytes)
			require.InDelta(t, ideal, gated, 0.10, "gated bytes against the labels with their rolls")
		})
	}
}

// TestLabelFormats: labels as objects or as [start, end] pairs, in a sidecar or bare; bad
// ones are refused with a message that says what to write.
func TestLabelFormats(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, json string
		want       []Interval
		err        string
	}{
		{"sidecar objects", `{"file": "x.mp4", "motion": [{"start": 1, "end": 2}]}`, []Interval{{1, 2}}, ""},
		{"sidecar pairs", `{"motion": [[1, 2], [5.5, 9]]}`, []Interval{{1, 2}, {5.5, 9}}, ""},
		{"bare pairs", `[[3, 4]]`, []Interval{{3, 4}}, ""},
		{"bare objects", `[{"start": 3, "end": 4}]`, []Interval{{3, 4}}, ""},
		{"mixed", `[[3, 4], {"start": 6, "end": 7}]`, []Interval{{3, 4}, {6, 7}}, ""},
		{"empty", `{"motion": []}`, []Interval{}, ""},
		{"three numbers", `[[1, 2, 3]]`, nil, "write [start, end]"},
		{"end before start", `[[5, 2]]`, nil, "end after start"},
		{"missing end", `[{"start": 5}]`, nil, "needs both start and end"},
		{"no motion key", `{"oops": 1}`, nil, `no "motion" list`},
		{"not json", `motion`, nil, "want"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("l%d.json", i))
			require.NoError(t, os.WriteFile(p, []byte(tt.json), 0o600))
			got, err := ReadLabels(p)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestScoreIsHonest: an event over the whole clip scores precision and recall 1 but is
// flagged and has a poor frame precision and many seconds recorded outside the labels; a
// late event shows its latency; frames are scored one by one after warm-up.
func TestScoreIsHonest(t *testing.T) {
	frames := func(dur float64, moving func(t float64) bool) []Frame {
		var fs []Frame
		for at := 0.0; at < dur; at += 0.2 {
			fs = append(fs, Frame{At: at, Result: motion.Result{Warmup: at < 2, Motion: at >= 2 && moving(at)}})
		}
		return fs
	}
	tests := []struct {
		name                string
		events              []Event
		motion              func(t float64) bool
		long                bool
		latency             float64
		framePrec, frameRec float64
		fpRate, outside     float64
		precision, recall   float64
	}{
		{
			name:   "whole clip",
			events: []Event{{Start: 2, End: 60, RecordFrom: 0, RecordTo: 60}},
			motion: func(float64) bool { return true },
			long:   true, latency: -8, framePrec: 10.0 / 58, frameRec: 1, fpRate: 1, outside: 50,
			precision: 1, recall: 1,
		},
		{
			name:    "three seconds late",
			events:  []Event{{Start: 13, End: 24, RecordFrom: 10, RecordTo: 30}},
			motion:  func(t float64) bool { return t >= 13 && t < 20 },
			latency: 3, framePrec: 1, frameRec: 0.7, fpRate: 0, outside: 10,
			precision: 1, recall: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{Duration: 60, Labels: []Interval{{10, 20}}, Events: tt.events,
				Frames: frames(60, tt.motion)}
			flagLong(r)
			score(r)
			require.Equal(t, tt.long, r.Events[0].Long)
			require.True(t, r.Events[0].HasLatency)
			require.InDelta(t, tt.latency, r.Events[0].Latency, 1e-9)
			require.InDelta(t, tt.precision, r.Precision, 1e-9)
			require.InDelta(t, tt.recall, r.Recall, 1e-9)
			require.InDelta(t, tt.framePrec, r.FramePrecision, 0.02)
			require.InDelta(t, tt.frameRec, r.FrameRecall, 0.02)
			require.InDelta(t, tt.fpRate, r.FrameFPRate, 0.02)
			require.InDelta(t, tt.outside, r.RecordedOutside, 0.05)
			if tt.long {
				require.Contains(t, r.Summary(), "over 90% of the video")
			}
		})
	}
}
