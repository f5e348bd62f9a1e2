package motioneval

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SuiteClip is one video of a folder and its labels: NAME.json next to NAME.mp4 (or .mkv,
// .ts); a video without a sidecar has no labels.
type SuiteClip struct {
	Video  string
	Labels []Interval // nil without a sidecar
}

// FindSuite lists the videos of dir with their labels, in name order.
func FindSuite(dir string) ([]SuiteClip, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []SuiteClip
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".mp4" && ext != ".mkv" && ext != ".ts") || strings.Contains(e.Name(), ".tmp") {
			continue
		}
		c := SuiteClip{Video: filepath.Join(dir, e.Name())}
		side := strings.TrimSuffix(c.Video, filepath.Ext(c.Video)) + ".json"
		if _, err := os.Stat(side); err == nil {
			if c.Labels, err = ReadLabels(side); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no video (.mp4, .mkv, .ts): point --suite at a folder of clips with JSON sidecars", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Video < out[j].Video })
	return out, nil
}

// RunSuite evaluates every clip of dir with the options' configuration, in order.
func RunSuite(ctx context.Context, o Options, dir string) ([]*Report, error) {
	clips, err := FindSuite(dir)
	if err != nil {
		return nil, err
	}
	var out []*Report
	for _, c := range clips {
		o.Video = c.Video
		r, err := Run(ctx, o, c.Labels)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// WriteSuiteTable prints one line per report.
func WriteSuiteTable(w io.Writer, rs []*Report) {
	fmt.Fprintf(w, "%-34s %6s %6s %6s %8s %7s %7s %7s %8s %7s %7s  %s\n",
		"clip", "events", "prec", "recall", "latency", "f-prec", "f-rec", "f-FP%", "outside", "gated%", "ideal%", "notes")
	for _, r := range rs {
		notes := []string{}
		for _, e := range r.Events {
			if e.Long {
				notes = append(notes, "event >90% of clip")
				break
			}
		}
		if len(r.Missed) > 0 {
			notes = append(notes, fmt.Sprintf("missed %d", len(r.Missed)))
		}
		if len(r.FalseEvents) > 0 {
			notes = append(notes, fmt.Sprintf("false %d", len(r.FalseEvents)))
		}
		labelled := "-"
		if r.Labels != nil {
			labelled = ""
		}
		num := func(v float64, f string) string {
			if labelled != "" {
				return labelled
			}
			return fmt.Sprintf(f, v)
		}
		fmt.Fprintf(w, "%-34s %6d %6s %6s %8s %7s %7s %7s %8s %7.1f %7s  %s\n",
			strings.TrimSuffix(filepath.Base(r.Video), filepath.Ext(r.Video)), len(r.Events),
			num(r.Precision, "%.2f"), num(r.Recall, "%.2f"), num(r.MaxLatency, "%.1fs"),
			num(r.FramePrecision, "%.2f"), num(r.FrameRecall, "%.2f"), num(100*r.FrameFPRate, "%.1f"),
			num(r.RecordedOutside, "%.1fs"), 100*float64(r.GatedBytes)/float64(max(1, r.ContinuousBytes)),
			num(100*float64(r.IdealBytes)/float64(max(1, r.ContinuousBytes)), "%.1f"), strings.Join(notes, ", "))
	}
}

// JSONEvent is an event in the --json output.
type JSONEvent struct {
	Start      float64      `json:"start"`
	End        float64      `json:"end"`
	Latency    *float64     `json:"latency"` // null outside every label
	RecordFrom float64      `json:"recordFrom"`
	RecordTo   float64      `json:"recordTo"`
	PeakScore  float64      `json:"peakScore"`
	Long       bool         `json:"longerThan90Percent"`
	Regions    []JSONRegion `json:"regions"`
}

// JSONRegion is a moving region in 0..1 frame coordinates.
type JSONRegion struct {
	X    float64 `json:"x"`
	Y    float64 `json:"y"`
	W    float64 `json:"w"`
	H    float64 `json:"h"`
	Area float64 `json:"area"`
}

// JSONClip is one clip in the --json output. Label-dependent figures are null without labels.
type JSONClip struct {
	Video           string      `json:"video"`
	Duration        float64     `json:"duration"`
	Labels          []Interval  `json:"labels"`
	Events          []JSONEvent `json:"events"`
	Precision       *float64    `json:"precision"`
	Recall          *float64    `json:"recall"`
	FramePrecision  *float64    `json:"framePrecision"`
	FrameRecall     *float64    `json:"frameRecall"`
	FrameFPRate     *float64    `json:"frameFalsePositiveRate"`
	RecordedOutside *float64    `json:"recordedOutsideLabels"`
	ContinuousBytes int64       `json:"continuousBytes"`
	GatedBytes      int64       `json:"gatedBytes"`
	BytesKept       float64     `json:"bytesKept"` // gated / continuous
	IdealBytesKept  *float64    `json:"idealBytesKept"`
	DetectorMicros  float64     `json:"detectorMicrosPerFrame"`
}

// JSON returns the report in the --json form.
func (r *Report) JSON() JSONClip {
	c := JSONClip{Video: r.Video, Duration: r.Duration, Labels: r.Labels, Events: []JSONEvent{},
		ContinuousBytes: r.ContinuousBytes, GatedBytes: r.GatedBytes, DetectorMicros: r.DetectorMicros,
		BytesKept: float64(r.GatedBytes) / float64(max(1, r.ContinuousBytes))}
	for _, e := range r.Events {
		je := JSONEvent{Start: e.Start, End: e.End, RecordFrom: e.RecordFrom, RecordTo: e.RecordTo, PeakScore: e.PeakScore,
			Long: e.Long, Regions: []JSONRegion{}}
		if e.HasLatency {
			l := e.Latency
			je.Latency = &l
		}
		for _, g := range e.Regions {
			je.Regions = append(je.Regions, JSONRegion{X: g.X, Y: g.Y, W: g.W, H: g.H, Area: g.Area})
		}
		c.Events = append(c.Events, je)
	}
	if r.Labels != nil {
		p := func(v float64) *float64 { return &v }
		c.Precision, c.Recall = p(r.Precision), p(r.Recall)
		c.FramePrecision, c.FrameRecall, c.FrameFPRate = p(r.FramePrecision), p(r.FrameRecall), p(r.FrameFPRate)
		c.RecordedOutside = p(r.RecordedOutside)
		c.IdealBytesKept = p(float64(r.IdealBytes) / float64(max(1, r.ContinuousBytes)))
	}
	return c
}

// WriteJSON prints the reports as a JSON list, one object per clip.
func WriteJSON(w io.Writer, rs []*Report) error {
	out := make([]JSONClip, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.JSON())
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
