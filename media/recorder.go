package media

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgecam/edgecam/media/gst"
	"go.uber.org/zap"
)

// SegmentOptions configure local recording.
type SegmentOptions struct {
	Dir     string
	Segment time.Duration
	Format  string // mkv or mp4
	Log     *zap.Logger
	// Drain bounds the wait for the last file to be finalised when recording stops.
	Drain time.Duration
}

// SegmentRecorder writes access units into local segment files of about Segment length,
// each starting on a keyframe and playable on its own.
type SegmentRecorder struct {
	opts SegmentOptions
	log  *zap.Logger
	desc string

	mu    sync.Mutex
	files []string
	keys  []pushedKey // recent keyframes pushed, to name files after their first keyframe
}

// pushedKey maps a keyframe's pipeline timestamp back to its wall time.
type pushedKey struct {
	pts  time.Duration
	wall time.Time
}

// maxPushedKeys bounds the keyframe memory; splitmuxsink opens a file about one GOP late.
const maxPushedKeys = 16

// NewSegmentRecorder checks the options and creates the directory.
func NewSegmentRecorder(opts SegmentOptions) (*SegmentRecorder, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Drain <= 0 {
		opts.Drain = 10 * time.Second
	}
	desc, err := SegmentDescription(opts.Dir, opts.Segment, opts.Format)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("recordings directory: %w; set recording.local.dir to a writable directory", err)
	}
	return &SegmentRecorder{opts: opts, log: opts.Log.With(zap.String("recorder", "local")), desc: desc}, nil
}

// Record writes the subscription's access units until ctx ends or the subscription closes,
// then finalises the current file. The subscription's first unit must be a keyframe (the
// Hub guarantees it). Record closes sub.
func (r *SegmentRecorder) Record(ctx context.Context, sub *Subscription) error {
	defer sub.Close()
	p, err := gst.Parse(r.desc, gst.Options{Name: "segments", Log: r.log})
	if err != nil {
		return err
	}
	src, err := p.AppSrc(RecorderSrc)
	if err != nil {
		return err
	}
	if err := p.NameSegments(SegmentMux, r.nextFile); err != nil {
		return err
	}

	// The pipeline outlives ctx: it ends with the end-of-stream that the feeder pushes
	// last, which makes the muxer finalise the file, or when the drain time is up.
	runCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	feedCtx, stopFeed := context.WithCancel(ctx)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		r.feed(feedCtx, sub, src)
		_ = src.EndOfStream()
		time.AfterFunc(r.opts.Drain, abort)
	}()
	err = p.Run(runCtx)
	stopFeed()
	<-fed
	switch {
	case errors.Is(err, gst.ErrEOS):
		return nil
	case err == nil:
		return fmt.Errorf("recording did not finish within %s: the last segment may be incomplete", r.opts.Drain)
	}
	return err
}

// feed pushes units until ctx ends, the subscription closes or the pipeline stops taking them.
func (r *SegmentRecorder) feed(ctx context.Context, sub *Subscription, src *gst.AppSrc) {
	base := time.Duration(-1)
	for {
		au, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if base < 0 {
			base = au.PTS
		}
		if au.Keyframe {
			r.mu.Lock()
			if len(r.keys) == maxPushedKeys {
				r.keys = append(r.keys[:0], r.keys[1:]...)
			}
			r.keys = append(r.keys, pushedKey{pts: au.PTS - base, wall: au.Wall})
			r.mu.Unlock()
		}
		buf := gst.Buffer{Data: au.Data, PTS: au.PTS - base, DTS: au.DTS - base, Duration: au.Duration, Delta: !au.Keyframe}
		if err := src.Push(buf); err != nil {
			r.log.Debug("recording pipeline stopped taking frames", zap.Error(err))
			return
		}
	}
}

// nextFile names a new segment after the wall time of its first keyframe, in UTC.
func (r *SegmentRecorder) nextFile(_ uint, firstPTS time.Duration) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := time.Now()
	for _, k := range r.keys {
		if k.pts <= firstPTS {
			t = k.wall
		}
	}
	stem := filepath.Join(r.opts.Dir, t.UTC().Format("20060102T150405.000Z"))
	name := stem + "." + r.opts.Format
	for i := 1; fileExists(name); i++ {
		name = fmt.Sprintf("%s-%d.%s", stem, i, r.opts.Format)
	}
	r.files = append(r.files, name)
	r.log.Info("new segment", zap.String("file", name))
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Files returns the segment files written so far, oldest first.
func (r *SegmentRecorder) Files() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.files...)
}
