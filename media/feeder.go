package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgecam/edgecam/media/gst"
	"github.com/edgecam/edgecam/media/h264"
	"go.uber.org/zap"
)

// feeder pushes a subscription into appsrc pipelines and finalises each on stop.
//
// A pipeline starts only with the first unit to write (a stop before any frame leaves no
// file), and a keyframe whose SPS or PPS differs from the running pipeline's (an encoder
// that changed its frame rate or size) ends that pipeline cleanly and starts the next one
// on that keyframe: muxers cannot take new codec data mid-file.
type feeder struct {
	name  string
	desc  string
	log   *zap.Logger
	drain time.Duration
	// setup prepares the pipeline before it plays (signals, properties).
	setup func(*gst.Pipeline) error
	// onStart is called before each pipeline starts (timestamps restart from zero).
	onStart func()
	// onKeyframe learns each keyframe's pipeline timestamp and wall time.
	onKeyframe func(pts time.Duration, wall time.Time)
	// allow, when set, says whether units may be written now (false: dropped; writing
	// resumes on a keyframe).
	allow func() bool

	mu sync.Mutex
	// The newest unit a pipeline of this feeder wrote and finalised: a later subscription to
	// the same hub (a motion recording that follows another, a retry) skips what is already
	// in a file instead of writing it twice.
	doneHub *Hub
	doneSeq uint64
	skipped uint64 // units not written: paused, or already written
}

// record runs pipelines for the subscription until ctx ends or the subscription closes.
func (f *feeder) record(ctx context.Context, sub *Subscription) error {
	gap := false
	var first *AccessUnit
	for {
		if first == nil {
			au, err := f.next(ctx, sub, &gap)
			if err != nil {
				return nil // nothing more to write
			}
			if !au.Keyframe {
				continue // the hub starts subscriptions on keyframes; be safe anyway
			}
			first = &au
		}
		carry, err := f.run(ctx, sub, *first)
		if err != nil || carry == nil {
			return err
		}
		f.log.Info("the stream's parameters changed (new SPS/PPS): starting a new file", zap.String("recorder", f.name))
		first = carry
	}
}

// next returns the next unit to write: allowed now, not written before, and a keyframe
// after anything skipped.
func (f *feeder) next(ctx context.Context, sub *Subscription, gap *bool) (AccessUnit, error) {
	hold := holdFrom(ctx)
	for {
		if hold != nil {
			if err := hold.wait(ctx); err != nil {
				return AccessUnit{}, err
			}
		}
		au, err := sub.Next(ctx)
		if err != nil {
			return au, err
		}
		if f.written(sub.hub, au.Seq) || (f.allow != nil && !f.allow()) {
			*gap = true
			f.mu.Lock()
			f.skipped++
			f.mu.Unlock()
			continue
		}
		if *gap && !au.Keyframe {
			f.mu.Lock()
			f.skipped++
			f.mu.Unlock()
			continue
		}
		*gap = false
		return au, nil
	}
}

func (f *feeder) written(h *Hub, seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return h == f.doneHub && seq <= f.doneSeq
}

// run plays one pipeline from first until ctx ends, the subscription closes (carry nil), or a
// keyframe brings new parameter sets (carry is that keyframe, not written yet).
func (f *feeder) run(ctx context.Context, sub *Subscription, first AccessUnit) (carry *AccessUnit, err error) {
	p, err := gst.Parse(f.desc, gst.Options{Name: f.name, Log: f.log})
	if err != nil {
		return nil, err
	}
	src, err := p.AppSrc(RecorderSrc)
	if err != nil {
		return nil, err
	}
	if f.setup != nil {
		if err := f.setup(p); err != nil {
			return nil, err
		}
	}
	if f.onStart != nil {
		f.onStart()
	}
	// The pipeline outlives ctx: it ends with the end-of-stream that the feeder pushes
	// last, which makes the muxer finalise its file, or when the drain time is up. A sink
	// that stopped taking data (a stalled card) blocks Push: the drain time after ctx ends
	// bounds that wait too, and stopping the pipeline releases Push.
	runCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	stopWatch := context.AfterFunc(ctx, func() { time.AfterFunc(f.drain, abort) })
	defer stopWatch()
	feedCtx, stopFeed := context.WithCancel(ctx)
	fed := make(chan struct{})
	var last uint64
	go func() {
		defer close(fed)
		carry, last = f.feed(feedCtx, sub, src, first)
		_ = src.EndOfStream()
		time.AfterFunc(f.drain, abort)
	}()
	err = p.Run(runCtx)
	stopFeed()
	<-fed
	switch {
	case errors.Is(err, gst.ErrEOS):
		f.mu.Lock()
		f.doneHub, f.doneSeq = sub.hub, last
		f.mu.Unlock()
		return carry, nil
	case err == nil:
		return nil, fmt.Errorf("%s did not finish within %s: the last part may be incomplete", f.name, f.drain)
	}
	return nil, err
}

// feed pushes first and the units after it until ctx ends, the subscription closes, the
// pipeline stops taking them, or a keyframe brings new parameter sets (returned as carry).
// last is the sequence number of the newest unit pushed.
func (f *feeder) feed(ctx context.Context, sub *Subscription, src *gst.AppSrc, first AccessUnit) (carry *AccessUnit, last uint64) {
	base := first.PTS
	sps, pps := h264.ParamSets(first.Data)
	sps, pps = bytes.Clone(sps), bytes.Clone(pps)
	gap := false
	au := first
	for {
		if au.Keyframe {
			s, p := h264.ParamSets(au.Data)
			switch {
			case s == nil || p == nil:
			case sps == nil:
				sps, pps = bytes.Clone(s), bytes.Clone(p)
			case !bytes.Equal(s, sps) || !bytes.Equal(p, pps):
				return &au, last
			}
			if f.onKeyframe != nil {
				f.onKeyframe(au.PTS-base, au.Wall)
			}
		}
		buf := gst.Buffer{Data: au.Data, PTS: au.PTS - base, DTS: au.DTS - base, Duration: au.Duration, Delta: !au.Keyframe}
		if err := src.Push(buf); err != nil {
			f.log.Debug("recording pipeline stopped taking frames", zap.Error(err))
			return nil, last
		}
		last = au.Seq
		var err error
		if au, err = f.next(ctx, sub, &gap); err != nil {
			return nil, last
		}
	}
}
