// Package motioneval evaluates motion detection on a video file, faster than real time:
// the events it finds, precision and recall against labelled intervals, the bytes a
// continuous recording would keep against a motion-gated one, and a score timeline.
package motioneval

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
	"github.com/edgecam/edgecam/motion"
)

// Interval is a span of the video, in seconds from its start.
type Interval struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// Options configure an evaluation.
type Options struct {
	Video string
	// Config supplies media.analysis and motion (masks, sensitivity, rolls, gap).
	Config config.Config
}

// Frame is one analysed frame; Result.Regions is a copy the Frame owns.
type Frame struct {
	At     float64 // seconds
	Result motion.Result
}

// Event is a detected motion event and the recording it would make.
type Event struct {
	Start, End float64 // the event, in seconds
	// RecordFrom and RecordTo bound the gated recording: from the keyframe at or before
	// Start − pre-roll to the moment the gate closed the event.
	RecordFrom, RecordTo float64
	PeakScore, PeakArea  float64
	// Latency is Start minus the start of the first labelled interval the event overlaps
	// (how late the detection was); HasLatency is false for an event outside every label.
	Latency    float64
	HasLatency bool
	// Long is set when the event lasts more than 90% of the video: motion gating saved
	// nothing, whatever precision and recall say.
	Long bool
	// Regions are the moving regions of the event's strongest frame, at PeakAt.
	Regions []motion.Region
	PeakAt  float64
	// Thumb is that frame (GRAY8, ThumbW x ThumbH), for the timeline.
	Thumb          []byte
	ThumbW, ThumbH int
}

// Report is an evaluation's outcome.
type Report struct {
	Video           string
	Duration        float64
	Frames          []Frame
	Events          []Event
	Threshold       float64 // the score at which a frame counts as motion (0.5)
	WarmupEnd       float64 // seconds: the detector learnt its background until here
	ContinuousBytes int64
	GatedBytes      int64
	// IdealBytes is what a recording of exactly the labelled intervals, each widened by the
	// pre-roll before and the post-roll and event gap after, would keep: the share a
	// perfect detector would record.
	IdealBytes  int64
	Labels      []Interval
	Precision   float64 // detected events overlapping a labelled interval
	Recall      float64 // labelled intervals whose whole span a recording covers
	Missed      []Interval
	FalseEvents []Event
	// Frame-level scores over the analysed frames after warm-up: a frame is positive when
	// the detector reported motion, and truly so when it lies in a labelled interval.
	FramePrecision, FrameRecall, FrameFPRate float64
	// RecordedOutside is the time, in seconds, recorded outside every labelled interval.
	RecordedOutside float64
	// MaxLatency is the largest event latency (seconds) against the labels it overlaps.
	MaxLatency    float64
	AnalysisFPS   float64
	EncodedFrames int
	// DetectorMicros is the mean time per analysed frame.
	DetectorMicros float64
	// Rolls used for IdealBytes.
	PreRoll, PostRoll, EventGap float64
}

type encodedUnit struct {
	at       float64
	size     int
	keyframe bool
}

// Run evaluates a file. Labels may be nil (precision and recall are then not computed).
func Run(ctx context.Context, o Options, labels []Interval) (*Report, error) {
	cfg := o.Config
	m := cfg.Media
	m.Source = config.Default().Media.Source
	m.Source.Kind, m.Source.Path, m.Source.Loop = config.SourceFile, o.Video, false
	m.Analysis.Enabled = true
	m.Analysis.Source = "" // the file itself is analysed, not the camera's substream
	plan, err := media.ResolvePlan(m, media.DefaultProbe())
	if err != nil {
		return nil, err
	}
	plan.Offline = true // as fast as the machine goes, every analysis frame looked at
	desc, err := plan.Description()
	if err != nil {
		return nil, err
	}
	p, err := gst.Parse(desc, gst.Options{Name: "motion-eval"})
	if err != nil {
		return nil, err
	}
	an, err := newAnalyser(o)
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		units []encodedUnit
		first = gst.NoTime
	)
	rel := func(pts time.Duration) float64 {
		if first == gst.NoTime {
			first = pts
		}
		return (pts - first).Seconds()
	}
	if err := p.OnSample(media.VideoSink, func(s gst.Sample) {
		mu.Lock()
		defer mu.Unlock()
		// Keyframes as the hub tells them (IDR NAL units), not by the container's flag.
		units = append(units, encodedUnit{at: rel(s.PTS), size: len(s.Data), keyframe: h264.IsKeyframe(s.Data)})
	}); err != nil {
		return nil, err
	}
	if err := p.OnSample(media.AnalysisSink, func(s gst.Sample) {
		mu.Lock()
		defer mu.Unlock()
		an.frame(s, rel(s.PTS))
	}); err != nil {
		return nil, err
	}
	if err := p.Run(ctx); !errors.Is(err, gst.ErrEOS) {
		if err == nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("reading %s: %w", o.Video, err)
	}
	if len(units) == 0 || len(an.frames) == 0 && an.err == nil {
		return nil, fmt.Errorf("%s: no video decoded", o.Video)
	}
	return an.report(labels, units)
}
