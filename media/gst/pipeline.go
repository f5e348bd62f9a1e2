package gst

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-gst/go-gst/gst"
	"github.com/go-gst/go-gst/gst/app"
	"go.uber.org/zap"
)

// ErrEOS is returned by Run when the pipeline reached its end of stream by itself.
var ErrEOS = errors.New("end of stream")

// Error is an error posted on a pipeline's bus.
type Error struct {
	Pipeline string
	Element  string
	Message  string
	Debug    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("pipeline %s: %s: %s", e.Pipeline, e.Element, e.Message)
}

// Options configure a pipeline.
type Options struct {
	// Name identifies the pipeline in logs and errors.
	Name string
	// Drain is how long Run waits, after its context ends, for an end-of-stream to flow through
	// the pipeline so that muxers finalise their files. Zero stops at once.
	Drain time.Duration
	// Log receives warnings and state changes; nil discards them.
	Log *zap.Logger
	// Redact, when set, cleans every text that leaves the package (errors, warnings, the
	// description): RTSP URLs carry passwords.
	Redact func(string) string
}

func (o Options) redact(s string) string {
	if o.Redact == nil {
		return s
	}
	return o.Redact(s)
}

// Pipeline is a GStreamer pipeline built from a gst-launch description.
type Pipeline struct {
	opts Options
	p    *gst.Pipeline
	log  *zap.Logger

	mu    sync.Mutex
	sinks []*app.Sink // kept reachable while the pipeline runs
}

// Parse builds a pipeline from a gst-launch description. Errors name the missing element
// or the bad syntax.
func Parse(desc string, opts Options) (*Pipeline, error) {
	Init()
	if opts.Name == "" {
		opts.Name = "pipeline"
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	p, err := gst.NewPipelineFromString(desc)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: %s (description: %s)", opts.Name, opts.redact(err.Error()), opts.redact(desc))
	}
	return &Pipeline{opts: opts, p: p, log: opts.Log.With(zap.String("pipeline", opts.Name))}, nil
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.opts.Name }

func (p *Pipeline) element(name string) (*gst.Element, error) {
	e, err := p.p.GetElementByName(name)
	if err != nil || e == nil {
		return nil, fmt.Errorf("pipeline %s has no element named %q", p.opts.Name, name)
	}
	return e, nil
}

// SetProperty sets an element's property from any value, converted to its string form and
// parsed by GStreamer as gst-launch would ("500", "veryfast", "controls,video_bitrate=500").
func (p *Pipeline) SetProperty(element, property string, value any) error {
	e, err := p.element(element)
	if err != nil {
		return err
	}
	if err := setArg(e.Unsafe(), property, fmt.Sprint(value)); err != nil {
		return fmt.Errorf("pipeline %s: element %s: %w", p.opts.Name, element, err)
	}
	return nil
}

// Property returns an element's property value.
func (p *Pipeline) Property(element, property string) (any, error) {
	e, err := p.element(element)
	if err != nil {
		return nil, err
	}
	v, err := e.GetProperty(property)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: element %s: property %s: %w", p.opts.Name, element, property, err)
	}
	return v, nil
}

// HasElementNamed reports whether the pipeline holds an element with that name.
func (p *Pipeline) HasElementNamed(name string) bool {
	_, err := p.element(name)
	return err == nil
}

// ForceKeyUnit asks the encoder upstream of element (usually the appsink) for an IDR with
// SPS/PPS on its next frame.
func (p *Pipeline) ForceKeyUnit(element string) error {
	e, err := p.element(element)
	if err != nil {
		return err
	}
	st := gst.NewStructure("GstForceKeyUnit")
	if err := st.SetValue("all-headers", true); err != nil {
		return err
	}
	if !e.SendEvent(gst.NewCustomEvent(gst.EventTypeCustomUpstream, st)) {
		return fmt.Errorf("pipeline %s: no element upstream of %s handled the keyframe request", p.opts.Name, element)
	}
	return nil
}

// Run plays the pipeline until it ends by itself (ErrEOS), fails (*Error) or ctx ends (nil).
// When ctx ends and Options.Drain is set, it sends end-of-stream and waits for it to reach
// the sinks, so that files are finalised. The pipeline is stopped when Run returns; a
// pipeline runs once.
func (p *Pipeline) Run(ctx context.Context) error {
	defer p.stop()
	bus := p.p.GetPipelineBus()
	if err := p.p.SetState(gst.StatePlaying); err != nil {
		if berr := p.drainBusForError(bus); berr != nil {
			return berr
		}
		return fmt.Errorf("pipeline %s: %w", p.opts.Name, err)
	}
	// The bus is waited on, not polled: a wake-up every few milliseconds returns from cgo
	// each time, and every return wakes Go's sysmon thread, which was the largest single
	// CPU cost of a relayed stream. The end of ctx posts an application message that ends
	// the wait.
	stopWake := context.AfterFunc(ctx, func() { p.wake(bus) })
	defer stopWake()
	for {
		if ctx.Err() != nil {
			return p.drain(bus)
		}
		msg := bus.TimedPop(gst.ClockTimeNone)
		if msg == nil {
			continue // the bus is flushing: ctx decides
		}
		if done, err := p.handle(msg); done {
			return err
		}
	}
}

// wakeName names the application message that ends Run's wait on the bus.
const wakeName = "edgecam-wake"

// wake posts the message that ends a blocking wait on the bus.
func (p *Pipeline) wake(bus *gst.Bus) {
	if msg := gst.NewApplicationMessage(p.p, gst.NewStructure(wakeName)); msg != nil {
		bus.Post(msg)
	}
}

// handle reacts to one bus message; done says that the pipeline has finished.
func (p *Pipeline) handle(msg *gst.Message) (done bool, err error) {
	switch msg.Type() {
	case gst.MessageEOS:
		return true, ErrEOS
	case gst.MessageError:
		return true, p.busError(msg)
	case gst.MessageWarning:
		w := msg.ParseWarning()
		p.log.Warn("GStreamer warning", zap.String("element", msg.Source()), zap.String("message", p.opts.redact(w.Error())), zap.String("debug", p.opts.redact(w.DebugString())))
	case gst.MessageLatency:
		p.p.RecalculateLatency()
	case gst.MessageClockLost:
		// As gst-launch does: pausing and playing again selects a new clock.
		_ = p.p.SetState(gst.StatePaused)
		_ = p.p.SetState(gst.StatePlaying)
	case gst.MessageStateChanged:
		if msg.Source() == p.p.GetName() {
			oldState, newState := msg.ParseStateChanged()
			p.log.Debug("state changed", zap.String("from", oldState.String()), zap.String("to", newState.String()))
		}
	}
	return false, nil
}

func (p *Pipeline) busError(msg *gst.Message) error {
	gerr := msg.ParseError()
	return &Error{Pipeline: p.opts.Name, Element: msg.Source(), Message: p.opts.redact(gerr.Error()), Debug: p.opts.redact(gerr.DebugString())}
}

// drainBusForError returns the first error message already posted, if any.
func (p *Pipeline) drainBusForError(bus *gst.Bus) error {
	for {
		msg := bus.TimedPop(gst.ClockTime(100 * time.Millisecond))
		if msg == nil {
			return nil
		}
		if msg.Type() == gst.MessageError {
			return p.busError(msg)
		}
	}
}

// drain sends end-of-stream and waits up to Options.Drain for it to arrive at the sinks.
func (p *Pipeline) drain(bus *gst.Bus) error {
	if p.opts.Drain <= 0 {
		return nil
	}
	p.p.SendEvent(gst.NewEOSEvent())
	deadline := time.Now().Add(p.opts.Drain)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		msg := bus.TimedPop(gst.ClockTime(left))
		if msg == nil {
			continue
		}
		if done, err := p.handle(msg); done {
			if errors.Is(err, ErrEOS) {
				return nil
			}
			return err
		}
	}
	return fmt.Errorf("pipeline %s: end of stream did not arrive within %s; the last file may be incomplete", p.opts.Name, p.opts.Drain)
}

func (p *Pipeline) stop() {
	_ = p.p.SetState(gst.StateNull)
	p.mu.Lock()
	p.sinks = nil
	p.mu.Unlock()
}
