package media

import (
	"context"
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
	// MinFree keeps this many bytes free on the file system.
	MinFree  int64
	Interval time.Duration // between sweeps (default 30 s)
	Log      *zap.Logger
	// freeBytes reports free space (tests replace it).
	freeBytes func(dir string) (int64, error)
}

// Janitor keeps local recordings within age, size and free-disk bounds, oldest first. When
// the disk is below its floor and nothing is left to delete, it pauses recording.
type Janitor struct {
	opts  JanitorOptions
	log   *zap.Logger
	kick  chan struct{}
	mu    sync.Mutex
	pause bool
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
		o.freeBytes = freeBytes
	}
	return &Janitor{opts: o, log: o.Log, kick: make(chan struct{}, 1)}
}

// Paused reports whether recording must pause for lack of disk space.
func (j *Janitor) Paused() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pause
}

// Kick asks for a sweep soon (a new segment was opened).
func (j *Janitor) Kick() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// Run sweeps at start, every interval and when kicked, until ctx ends.
func (j *Janitor) Run(ctx context.Context) {
	tick := time.NewTicker(j.opts.Interval)
	defer tick.Stop()
	for {
		j.Sweep(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-j.kick:
		}
	}
}

type segmentFile struct {
	path string
	size int64
	mod  time.Time
}

// Sweep applies the bounds once. The newest segment (being written) is never deleted.
func (j *Janitor) Sweep(now time.Time) {
	files := j.segments()
	var total int64
	for _, f := range files {
		total += f.size
	}
	del := func(f segmentFile, why string) {
		if err := os.Remove(f.path); err != nil {
			j.log.Warn("cannot delete old recording", zap.String("file", f.path), zap.Error(err))
			return
		}
		total -= f.size
		j.log.Info("deleted old recording", zap.String("file", f.path), zap.String("why", why))
	}
	for len(files) > 1 {
		f := files[0]
		switch {
		case j.opts.MaxAge > 0 && now.Sub(f.mod) > j.opts.MaxAge:
			del(f, "recording.local.max_age")
		case j.opts.MaxBytes > 0 && total > j.opts.MaxBytes:
			del(f, "recording.local.max_bytes")
		case j.opts.MinFree > 0 && j.lowOnDisk():
			del(f, "recording.local.min_free_bytes")
		default:
			files = nil
			continue
		}
		files = files[1:]
	}
	low := j.opts.MinFree > 0 && j.lowOnDisk()
	j.mu.Lock()
	changed := low != j.pause
	j.pause = low
	j.mu.Unlock()
	if changed && low {
		j.log.Error("recording paused: the disk is below recording.local.min_free_bytes and no old recording is left to delete", zap.String("dir", j.opts.Dir))
	} else if changed {
		j.log.Info("recording resumed: disk space is back above recording.local.min_free_bytes")
	}
}

func (j *Janitor) lowOnDisk() bool {
	free, err := j.opts.freeBytes(j.opts.Dir)
	return err == nil && free < j.opts.MinFree
}

// segments lists segment files, oldest first.
func (j *Janitor) segments() []segmentFile {
	var out []segmentFile
	_ = filepath.WalkDir(j.opts.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(d.Name(), "."+j.opts.Ext) {
			return nil
		}
		if info, err := d.Info(); err == nil {
			out = append(out, segmentFile{path: p, size: info.Size(), mod: info.ModTime()})
		}
		return nil
	})
	sort.Slice(out, func(a, b int) bool { return out[a].mod.Before(out[b].mod) })
	return out
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
