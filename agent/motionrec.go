package agent

import (
	"context"
	"time"

	"github.com/edgecam/edgecam/media"
	"go.uber.org/zap"
)

// motionSession is one recorder's running motion recording.
type motionSession struct {
	cancel context.CancelFunc
	hold   *media.Hold   // held between an event's end and the recording's end
	done   chan struct{} // closed once the recording is finalised
	end    *time.Timer   // the pending end (nil while an event is under way)
}

// motionRecording starts (or extends) the motion recording of each gated recorder from the
// keyframe at or before since (the pre-roll, which the hub keeps).
//
// When an event ends, its recording stops writing at once but keeps its file open (held)
// for motion.pre_roll: a new event within that time would reach back into it with its
// pre-roll anyway, so it extends the open recording, which writes on from where it
// stopped: one file, no gap, nothing written twice. A later event starts a new recording
// that skips what the previous one already wrote. A recording that fails is started again
// (with back-off) until its event ends.
func (a *Agent) startMotionRecordings(since time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.recordCtx == nil || a.stopping {
		return
	}
	a.motion.mu.Lock()
	defer a.motion.mu.Unlock()
	if a.motion.sessions == nil {
		a.motion.sessions = map[string]*motionSession{}
	}
	for _, rec := range a.gated {
		prev := a.motion.sessions[rec.Name()]
		if prev != nil && prev.end != nil && prev.end.Stop() {
			prev.end = nil // still open: the new event extends it
			prev.hold.Resume()
			a.log.Debug("motion recording extended", zap.String("recorder", rec.Name()))
			continue
		}
		if prev != nil && prev.end == nil {
			select {
			case <-prev.done:
			default:
				continue // an event is already being recorded
			}
		}
		ctx, cancel := context.WithCancel(a.recordCtx)
		s := &motionSession{cancel: cancel, hold: media.NewHold(), done: make(chan struct{})}
		ctx = media.WithHold(ctx, s.hold)
		a.motion.sessions[rec.Name()] = s
		name := rec.Name() + " (motion)"
		sub := a.recorderSub(name, since)
		a.recorders.Add(1) // under a.mu, so that it never races the shutdown's Wait
		go func() {
			defer a.recorders.Done()
			defer close(s.done)
			defer cancel()
			if prev != nil {
				<-prev.done // the previous recording finalises first: this one skips what it wrote
			}
			again := func() *media.Subscription { return a.recorderSub(name, time.Time{}) }
			if err := media.RecordLoop(ctx, rec, sub, again, a.log.Named("recorder")); err != nil {
				a.log.Warn("motion recording failed", zap.String("recorder", rec.Name()), zap.Error(err))
			}
		}()
	}
}

// stopMotionRecordings stops the running motion recordings: they hold now and finalise
// their files motion.pre_roll from now unless a new event extends them (see
// startMotionRecordings).
func (a *Agent) stopMotionRecordings() {
	linger := a.cfg.Motion.PreRoll
	a.motion.mu.Lock()
	defer a.motion.mu.Unlock()
	for _, s := range a.motion.sessions {
		if s.end == nil {
			s.hold.Pause()
			s.end = time.AfterFunc(linger, s.cancel)
		}
	}
}
