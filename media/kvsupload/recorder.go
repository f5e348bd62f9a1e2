package kvsupload

import (
	"context"
	"errors"
	"sync"

	"github.com/edgecam/edgecam/media"
	"go.uber.org/zap"
)

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	Spool      *Spool
	Fragmenter FragmenterOptions
	// Name identifies the recorder (default "kvs-native").
	Name string
	Log  *zap.Logger
}

// RecorderStats counts what the recorder wrote to the spool.
type RecorderStats struct {
	Fragmenter   FragmenterStats
	Spooled      uint64 // fragments appended to the spool
	SpoolErrors  uint64 // fragments lost to spool write errors
	Overlap      uint64 // access units skipped because an earlier session already wrote them
	LastSpooled  int64  // timecode of the last fragment spooled
	LastSpoolErr string
}

// Recorder writes a Hub subscription into the spool, one fragment per GOP: the native
// uploader's media.Recorder. Sessions (motion recordings) run one at a time and share one
// fragmenter, so timecodes keep growing and an access unit is written once even when a
// session's pre-roll reaches back into what the previous one wrote.
type Recorder struct {
	opts RecorderOptions
	log  *zap.Logger

	run     sync.Mutex // one session at a time
	frag    *Fragmenter
	lastSeq uint64

	mu    sync.Mutex
	stats RecorderStats
}

var _ media.Recorder = (*Recorder)(nil)

// NewRecorder returns a recorder into opts.Spool.
func NewRecorder(opts RecorderOptions) (*Recorder, error) {
	if opts.Spool == nil {
		return nil, errors.New("kvsupload: recorder without a spool")
	}
	if opts.Name == "" {
		opts.Name = "kvs-native"
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	return &Recorder{opts: opts, log: opts.Log, frag: NewFragmenter(opts.Fragmenter)}, nil
}

// Name identifies the recorder.
func (r *Recorder) Name() string { return r.opts.Name }

// Record spools the subscription's access units until ctx ends or the subscription closes,
// then spools the last (partial) GOP. It closes sub.
func (r *Recorder) Record(ctx context.Context, sub *media.Subscription) error {
	defer sub.Close()
	r.run.Lock()
	defer r.run.Unlock()
	defer r.flush()
	for {
		// A motion recording held after its event reads nothing until a new event resumes it.
		if err := media.WaitHold(ctx); err != nil {
			return nil
		}
		au, err := sub.Next(ctx)
		if err != nil {
			if errors.Is(err, media.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if au.Seq != 0 && au.Seq <= r.lastSeq {
			r.count(func(s *RecorderStats) { s.Overlap++ })
			continue
		}
		r.lastSeq = au.Seq
		if fr, ok := r.frag.Push(au); ok {
			r.spool(&fr)
		}
	}
}

func (r *Recorder) flush() {
	if fr, ok := r.frag.Flush(); ok {
		r.spool(&fr)
	}
	r.count(func(s *RecorderStats) { s.Fragmenter = r.frag.Stats() })
}

func (r *Recorder) spool(fr *Fragment) {
	err := r.opts.Spool.Append(fr)
	r.count(func(s *RecorderStats) {
		s.Fragmenter = r.frag.Stats()
		if err != nil {
			s.SpoolErrors++
			s.LastSpoolErr = err.Error()
			return
		}
		s.Spooled++
		s.LastSpooled = fr.Timecode
	})
	if err != nil {
		r.log.Error("fragment lost: the spool cannot write it (check the spool directory and its disk)", zap.Int64("timecode", fr.Timecode),
			zap.Int("frames", fr.Frames), zap.Error(err))
	}
}

func (r *Recorder) count(f func(*RecorderStats)) {
	r.mu.Lock()
	f(&r.stats)
	r.mu.Unlock()
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() RecorderStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}
