package media

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// JanitorOptions bound the local recordings.
type JanitorOptions struct {
	Dir string
	// Ext is the segment file extension (mkv or mp4); other files are never touched.
	Ext string
	// MaxAge deletes older segments (0: keep). MaxBytes bounds their total size (0: no bound).
	MaxAge   time.Duration
	MaxBytes int64
	// MaxShare bounds their total size to this share of the file system's size (0: no
	// bound); with MaxBytes too, the smaller bound holds.
	MaxShare float64
	// MinFree keeps this many bytes free on the file system. The floor is raised to two
	// segments (SegmentBytes, and the largest segment on disk), so that a segment never
	// runs out of space before the janitor acts.
	MinFree int64
	// SegmentBytes is the expected size of one segment (bitrate × segment length; 0: unknown)
	// and Segment its length (for the log: how long the recordings' room lasts).
	SegmentBytes int64
	Segment      time.Duration
	Interval     time.Duration // between sweeps (default 30 s)
	Log          *zap.Logger
	// Now is the wall clock (default time.Now); Elapsed is a monotonic clock (default: time
	// since NewJanitor). Ages are measured on Elapsed once the janitor has seen a file, so a
	// clock step (NTP's first sync on a device without a real-time clock) never makes
	// recordings look older or younger than they are. Tests replace both.
	Now     func() time.Time
	Elapsed func() time.Duration
	// freeBytes reports free and total space (tests replace it).
	freeBytes func(dir string) (free, total int64, err error)
}

// plausibleSince is the earliest modification time taken at its word: a device without a
// real-time clock starts in 1970 (or at its last shutdown) until NTP answers.
var plausibleSince = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Janitor keeps local recordings within age, size and free-disk bounds, oldest first. When
// the disk is below its floor and nothing is left to delete, it pauses recording.
type Janitor struct {
	opts JanitorOptions
	log  *zap.Logger
	kick chan struct{}

	sweep sync.Mutex          // one sweep at a time
	seen  map[string]seenFile // guarded by sweep

	mu      sync.Mutex
	pause   bool
	deleted int
}

// seenFile is the janitor's own record of a file's age, immune to clock steps.
type seenFile struct {
	at  time.Duration // Elapsed when the janitor first saw the file
	age time.Duration // the file's age then (0 when its time was implausible)
}

// NewJanitor returns a Janitor; call Run.
func NewJanitor(o JanitorOptions) *Janitor {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.freeBytes == nil {
		o.freeBytes = diskSpace
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Elapsed == nil {
		start := time.Now()
		o.Elapsed = func() time.Duration { return time.Since(start) } // monotonic
	}
	return &Janitor{opts: o, log: o.Log, kick: make(chan struct{}, 1), seen: map[string]seenFile{}}
}

// Paused reports whether recording must pause for lack of disk space.
func (j *Janitor) Paused() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pause
}

// Deleted returns how many segments the janitor deleted.
func (j *Janitor) Deleted() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.deleted
}

// Kick asks for a sweep soon (a new segment was opened).
func (j *Janitor) Kick() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// Run logs where recordings go and how much room they have, then sweeps at start, every
// interval and when kicked, until ctx ends.
func (j *Janitor) Run(ctx context.Context) {
	j.logLayout()
	tick := time.NewTicker(j.opts.Interval)
	defer tick.Stop()
	for {
		j.Sweep(j.opts.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-j.kick:
		}
	}
}

// logLayout says where recordings go and how much room they have.
func (j *Janitor) logLayout() {
	free, total, err := j.opts.freeBytes(j.opts.Dir)
	if err != nil {
		j.log.Warn("cannot read the recordings' file system", zap.String("dir", j.opts.Dir), zap.Error(err))
		return
	}
	fields := []zap.Field{zap.String("dir", j.opts.Dir), zap.String("filesystem_size", mib(total)), zap.String("free", mib(free)),
		zap.String("min_free", mib(j.minFree(0)))}
	if limit := j.maxBytes(total); limit > 0 {
		fields = append(fields, zap.String("max_bytes", mib(limit)))
		if j.opts.SegmentBytes > 0 && j.opts.Segment > 0 {
			fields = append(fields, zap.Duration("room_for", time.Duration(float64(limit)/float64(j.opts.SegmentBytes)*float64(j.opts.Segment)).Round(time.Minute)))
		}
	} else {
		fields = append(fields, zap.String("max_bytes", "no bound"))
	}
	j.log.Info("recordings", fields...)
}

func mib(n int64) string { return fmt.Sprintf("%.0fMiB", float64(n)/(1<<20)) }

// maxBytes is the bound on the recordings' total size for a file system of total bytes.
func (j *Janitor) maxBytes(total int64) int64 {
	limit := j.opts.MaxBytes
	if j.opts.MaxShare > 0 && total > 0 {
		share := int64(j.opts.MaxShare * float64(total))
		if limit <= 0 || share < limit {
			limit = share
		}
	}
	return limit
}

// minFree is the free-space floor: MinFree, raised to two segments.
func (j *Janitor) minFree(largest int64) int64 {
	return max(j.opts.MinFree, 2*j.opts.SegmentBytes, 2*largest)
}

type segmentFile struct {
	path  string
	size  int64
	birth time.Duration // on the Elapsed clock; negative before the janitor started
}

// Sweep applies the bounds once, with now as the wall clock's time. The newest segment
// (being written) is never deleted. It returns how many segments it deleted.
func (j *Janitor) Sweep(now time.Time) int {
	j.sweep.Lock()
	defer j.sweep.Unlock()
	files := j.segments(now)
	var total, largest int64
	for _, f := range files {
		total += f.size
		largest = max(largest, f.size)
	}
	free, fsTotal, fsErr := j.opts.freeBytes(j.opts.Dir)
	floor := j.minFree(largest)
	limit := j.maxBytes(fsTotal)
	low := func() bool { return floor > 0 && fsErr == nil && free < floor }
	elapsed := j.opts.Elapsed()
	deleted := 0
	del := func(f segmentFile, why string) {
		if err := os.Remove(f.path); err != nil {
			j.log.Warn("cannot delete old recording", zap.String("file", f.path), zap.Error(err))
			return
		}
		delete(j.seen, f.path)
		total -= f.size
		free += f.size
		deleted++
		j.log.Info("deleted old recording", zap.String("file", f.path), zap.String("why", why))
	}
	for len(files) > 1 {
		f := files[0]
		switch {
		case j.opts.MaxAge > 0 && elapsed-f.birth > j.opts.MaxAge:
			del(f, "recording.local.max_age")
		case limit > 0 && total > limit:
			del(f, "recording.local.max_bytes")
		case low():
			del(f, "recording.local.min_free_bytes")
			if fresh, _, err := j.opts.freeBytes(j.opts.Dir); err == nil {
				free = fresh
			}
		default:
			files = nil
			continue
		}
		files = files[1:]
	}
	isLow := low()
	j.mu.Lock()
	changed := isLow != j.pause
	j.pause = isLow
	j.deleted += deleted
	j.mu.Unlock()
	if changed && isLow {
		j.log.Error("recording paused: the disk is below its free-space floor and no old recording is left to delete",
			zap.String("dir", j.opts.Dir), zap.String("free", mib(free)), zap.String("floor", mib(floor)))
	} else if changed {
		j.log.Info("recording resumed: disk space is back above the free-space floor")
	}
	return deleted
}

// segments lists segment files, oldest first, and keeps the janitor's record of their ages.
func (j *Janitor) segments(now time.Time) []segmentFile {
	elapsed := j.opts.Elapsed()
	var out []segmentFile
	present := map[string]bool{}
	_ = filepath.WalkDir(j.opts.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(d.Name(), "."+j.opts.Ext) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		s, ok := j.seen[p]
		if !ok {
			s = seenFile{at: elapsed}
			if mod := info.ModTime(); !mod.Before(plausibleSince) && mod.Before(now) {
				s.age = now.Sub(mod)
			}
			j.seen[p] = s
		}
		present[p] = true
		out = append(out, segmentFile{path: p, size: info.Size(), birth: s.at - s.age})
		return nil
	})
	for p := range j.seen {
		if !present[p] {
			delete(j.seen, p)
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].birth != out[b].birth {
			return out[a].birth < out[b].birth
		}
		return out[a].path < out[b].path
	})
	return out
}

// diskSpace reports the free and total bytes of the file system holding dir.
func diskSpace(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
