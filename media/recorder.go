package media

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgecam/edgecam/internal/backoff"
	"github.com/edgecam/edgecam/media/gst"
	"go.uber.org/zap"
)

// Recorder writes a subscription's access units somewhere until ctx ends or the
// subscription closes, then finalises what it wrote. It closes the subscription.
type Recorder interface {
	Name() string
	Record(ctx context.Context, sub *Subscription) error
}

// RecordLoop runs rec until ctx ends, starting with sub (subscribed before the source
// started, so that nothing is missed) and, after a failure, with a new subscription from
// subscribe, waiting with jittered back-off between attempts.
func RecordLoop(ctx context.Context, rec Recorder, sub *Subscription, subscribe func() *Subscription, log *zap.Logger) error {
	failures := 0
	for {
		started := time.Now()
		err := rec.Record(ctx, sub)
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return err
		}
		if err == nil { // the hub closed: the agent is stopping
			return nil
		}
		if time.Since(started) > 2*time.Minute {
			failures = 0 // it recorded well for a while: start the back-off again
		}
		failures++
		wait := backoff.Delay(time.Second, time.Minute, failures)
		log.Warn("recording failed; starting it again", zap.String("recorder", rec.Name()), zap.Error(err), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		sub = subscribe()
	}
}

// SegmentOptions configure local recording.
type SegmentOptions struct {
	Dir     string
	Segment time.Duration
	Format  string // mkv or mp4
	Log     *zap.Logger
	// Drain bounds the wait for the last file to be finalised when recording stops.
	Drain time.Duration
	// Janitor, when set, is told about new files and may pause writing (disk full).
	Janitor *Janitor
}

// SegmentRecorder writes access units into local segment files of about Segment length,
// each starting on a keyframe, playable on its own, and named after its first frame's time.
type SegmentRecorder struct {
	opts SegmentOptions
	log  *zap.Logger
	f    *feeder

	mu    sync.Mutex
	files []string    // the newest rememberedFiles names
	count int         // segments opened
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
	r := &SegmentRecorder{opts: opts, log: opts.Log.With(zap.String("recorder", "local"))}
	recoverSegments(opts.Dir, opts.Format, r.log)
	r.f = &feeder{
		name: "segments", desc: desc, log: r.log, drain: opts.Drain,
		setup: func(p *gst.Pipeline) error { return p.NameSegments(SegmentMux, r.nextFile) },
		onStart: func() {
			r.mu.Lock()
			r.keys = r.keys[:0] // timestamps restart with each pipeline
			r.mu.Unlock()
		},
		onKeyframe: func(pts time.Duration, wall time.Time) {
			r.mu.Lock()
			if len(r.keys) == maxPushedKeys {
				r.keys = append(r.keys[:0], r.keys[1:]...)
			}
			r.keys = append(r.keys, pushedKey{pts: pts, wall: wall})
			r.mu.Unlock()
		},
	}
	if opts.Janitor != nil {
		r.f.allow = func() bool { return !opts.Janitor.Paused() }
	}
	return r, nil
}

// Name identifies the recorder.
func (r *SegmentRecorder) Name() string { return "local" }

// Record writes the subscription's access units until ctx ends or the subscription closes,
// then finalises the current file. Record closes sub.
//
// When the disk runs out of space, it deletes what the failed file left unplayable, has the
// janitor sweep at once, and starts again on the next keyframe without waiting.
func (r *SegmentRecorder) Record(ctx context.Context, sub *Subscription) error {
	defer sub.Close()
	var lastNoSpace time.Time
	quick := 0
	for {
		r.mu.Lock()
		opened := r.count
		r.mu.Unlock()
		err := r.f.record(ctx, sub)
		if err != nil {
			r.discardBroken(opened) // a failed file is neither kept without a frame nor counted
		}
		if !isNoSpace(err) || ctx.Err() != nil {
			return err
		}
		freed := 0
		if r.opts.Janitor != nil {
			freed = r.opts.Janitor.Sweep(r.opts.Janitor.opts.Now())
		}
		if time.Since(lastNoSpace) < 10*time.Second && freed == 0 {
			quick++
		} else {
			quick = 0
		}
		lastNoSpace = time.Now()
		if quick >= 2 { // the janitor cannot help: let the caller back off
			return fmt.Errorf("%w (the janitor found nothing more to delete: free space in %s, or raise recording.local.min_free_bytes)", err, r.opts.Dir)
		}
		r.log.Warn("out of disk space: old recordings deleted, recording again", zap.Error(err), zap.Int("deleted", freed))
	}
}

// isNoSpace reports whether a recording failed because its file system is full.
func isNoSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	var gerr *gst.Error
	if errors.As(err, &gerr) {
		s := strings.ToLower(gerr.Message + " " + gerr.Debug)
		return strings.Contains(s, "no space left") || strings.Contains(s, "no_space_left")
	}
	return strings.Contains(strings.ToLower(err.Error()), "no space left")
}

// discardBroken deletes the files opened since the count was opened that hold no complete
// frame (the header alone, or nothing): a full disk leaves such files behind. A file that
// could not be created at all is forgotten too: it is no segment.
func (r *SegmentRecorder) discardBroken(opened int) {
	r.mu.Lock()
	n := min(r.count-opened, len(r.files))
	names := append([]string(nil), r.files[len(r.files)-n:]...)
	r.mu.Unlock()
	for _, name := range names {
		info, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			r.forget(name)
			continue
		}
		if err == nil && info.Size() < minSegmentBytes {
			if os.Remove(name) == nil {
				r.forget(name)
				r.log.Info("deleted a segment cut short before its first frame", zap.String("file", name), zap.Int64("bytes", info.Size()))
			}
		}
	}
}

// minSegmentBytes: a smaller file holds no complete frame (a Matroska header alone is about
// 340 bytes; one keyframe is more than a kilobyte).
const minSegmentBytes = 1024

// forget removes a deleted file from the recorder's list and count.
func (r *SegmentRecorder) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, f := range r.files {
		if f == name {
			r.files = append(r.files[:i], r.files[i+1:]...)
			r.count--
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
	if len(r.files) == rememberedFiles { // a recorder runs for months: remember the newest only
		r.files = append(r.files[:0], r.files[1:]...)
	}
	r.files = append(r.files, name)
	r.count++
	r.log.Info("new segment", zap.String("file", name))
	if r.opts.Janitor != nil {
		r.opts.Janitor.Kick()
	}
	return name
}

// rememberedFiles bounds the names Files returns.
const rememberedFiles = 1024

// Files returns the newest segment files written (up to 1024), oldest first; the janitor
// may have deleted some since.
func (r *SegmentRecorder) Files() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.files...)
}

// Count returns how many segment files were opened.
func (r *SegmentRecorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// DefaultProbe answers with this machine's GStreamer.
func DefaultProbe() Probe { return gst.Probe{} }
