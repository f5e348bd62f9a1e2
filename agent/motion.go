package agent

import (
	"context"
	"sync"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media"
	"github.com/edgecam/edgecam/motion"
	"go.uber.org/zap"
)

// MotionEvent is what the agent publishes to edgecam/<thing>/events/motion.
type MotionEvent struct {
	ThingName   string     `json:"thingName"`
	Event       string     `json:"event"` // start or end
	Start       time.Time  `json:"start"`
	End         *time.Time `json:"end,omitempty"`
	PreRollFrom time.Time  `json:"preRollFrom"`
	PeakScore   float64    `json:"peakScore"`
	PeakArea    float64    `json:"peakArea"`
	// Regions are the boxes that moved in the event's strongest frame, in 0..1 frame
	// coordinates.
	Regions   []MotionRegion `json:"regions,omitempty"`
	Timestamp time.Time      `json:"timestamp"`
}

// MotionRegion is a moving region of a motion event: its box in 0..1 frame coordinates and
// the fraction of the watched area it covers.
type MotionRegion struct {
	X    float64 `json:"x"`
	Y    float64 `json:"y"`
	W    float64 `json:"w"`
	H    float64 `json:"h"`
	Area float64 `json:"area"`
}

// motionState is what the rest of the agent reads of motion detection.
type motionState struct {
	mu     sync.Mutex
	active bool
	score  float64
	events int
	// sessions are the motion recordings by recorder name (recording.mode motion; see motionrec.go).
	sessions map[string]*motionSession
	// feed is the separate analysis source (media.analysis.source), nil when analysis reads
	// the capture pipeline; decoder is the H.264 decoder analysis runs (analysis.go).
	feed    *media.AnalysisSource
	decoder media.Decoder
	// failsafe is true while the analysis source is down: motion recording records
	// everything until it is back.
	failsafe bool
}

// runMotion detects motion on the analysis frames until ctx ends, and acts on its events.
func (a *Agent) runMotion(ctx context.Context) {
	cfg := a.cfg
	if !cfg.Motion.Enabled || !cfg.Media.Analysis.Enabled {
		return
	}
	log := a.log.Named("motion")
	dopts, gopts := motion.FromConfig(cfg)
	det, err := motion.NewDetector(dopts)
	if err != nil {
		log.Error("motion detection off", zap.Error(err))
		return
	}
	gate, err := motion.NewGate(gopts)
	if err != nil {
		log.Error("motion detection off", zap.Error(err))
		return
	}
	frames, health, waitFeed := a.analysisFrames(ctx, a.log.Named("analysis"))
	defer waitFeed()
	flush := func() bool {
		ev, ok := gate.Flush(time.Now())
		if ok {
			a.onMotion(ev)
		}
		return ok
	}
	for {
		select {
		case <-ctx.Done():
			flush()
			return
		case <-a.motionReload: // a reload changed motion settings (reload.go)
			det, gate = a.reloadMotion(log, det, gate, &dopts, &gopts)
		case <-health: // the separate analysis source went down or came back (analysis.go)
			if !a.onAnalysisHealth(log, flush) {
				continue
			}
			// Back after an outage: learn the background again, from a fresh gate.
			d, derr := motion.NewDetector(dopts)
			g, gerr := motion.NewGate(gopts)
			if derr == nil && gerr == nil {
				det, gate = d, g
			}
		case f := <-frames:
			if f.Width != dopts.Width || f.Height != dopts.Height {
				continue // a pipeline restart can deliver a frame of another size first
			}
			if f.Stride != dopts.Stride { // rows padded otherwise than GStreamer's usual 4 bytes
				dopts.Stride = f.Stride
				if det, err = motion.NewDetector(dopts); err != nil {
					log.Error("motion detection off", zap.Error(err))
					return
				}
			}
			res, err := det.Process(f.Data)
			if err != nil {
				log.Debug("analysis frame skipped", zap.Error(err))
				continue
			}
			a.motion.mu.Lock()
			a.motion.score = res.Score
			a.motion.mu.Unlock()
			if ce := log.Check(zap.DebugLevel, "analysis frame"); ce != nil {
				ce.Write(zap.Duration("pts", f.PTS), zap.Float64("score", res.Score), zap.Float64("area", res.Area),
					zap.Bool("motion", res.Motion), zap.Bool("illumination", res.Illumination))
			}
			if ev, ok := gate.Update(f.Wall, res); ok {
				a.onMotion(ev)
			}
		}
	}
}

// onMotion publishes a motion event, logs it, and starts or stops motion recordings.
func (a *Agent) onMotion(ev motion.Event) {
	log := a.log.Named("motion")
	me := MotionEvent{ThingName: a.Thing(), Event: ev.Kind.String(), Start: ev.Start.UTC(), PreRollFrom: ev.PreRollFrom.UTC(),
		PeakScore: ev.PeakScore, PeakArea: ev.PeakArea, Timestamp: time.Now().UTC()}
	for _, r := range ev.Regions {
		me.Regions = append(me.Regions, MotionRegion{X: r.X, Y: r.Y, W: r.W, H: r.H, Area: r.Area})
	}
	a.motion.mu.Lock()
	if ev.Kind == motion.EventStart {
		a.motion.active = true
		a.motion.events++
	} else {
		a.motion.active = false
		end := ev.End.UTC()
		me.End = &end
	}
	a.motion.mu.Unlock()
	log.Info("motion "+me.Event, zap.Time("start", ev.Start), zap.Time("end", ev.End), zap.Float64("peak_score", ev.PeakScore), zap.Float64("peak_area", ev.PeakArea))

	if a.cfg.Recording.Mode == config.RecordMotion {
		if ev.Kind == motion.EventStart {
			a.startMotionRecordings(ev.PreRollFrom)
		} else if !a.analysisFailSafe() { // while analysis is down, recording goes on (analysis.go)
			a.stopMotionRecordings()
		}
	}
	// Queued on disk and delivered in order, through outages and restarts (events.go).
	a.queueEvent(me)
}

// MotionActive reports whether a motion event is under way.
func (a *Agent) MotionActive() bool {
	a.motion.mu.Lock()
	defer a.motion.mu.Unlock()
	return a.motion.active
}
