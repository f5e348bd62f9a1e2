package gst

import (
	"fmt"
	"time"

	"github.com/go-gst/go-gst/gst"
	"github.com/go-gst/go-gst/gst/app"
)

// AppSrc pushes buffers into a pipeline through an appsrc element.
type AppSrc struct {
	p   *Pipeline
	src *app.Source
}

// AppSrc returns the appsrc element named name. Set its caps and format in the description
// (e.g. appsrc name=src format=time is-live=true caps=video/x-h264,...).
func (p *Pipeline) AppSrc(name string) (*AppSrc, error) {
	e, err := p.element(name)
	if err != nil {
		return nil, err
	}
	if e.GetFactory().GetName() != "appsrc" {
		return nil, fmt.Errorf("pipeline %s: element %s is a %s, not an appsrc", p.opts.Name, name, e.GetFactory().GetName())
	}
	return &AppSrc{p: p, src: app.SrcFromElement(e)}, nil
}

// Buffer is what Push sends: data and timing (NoTime when unknown).
type Buffer struct {
	Data     []byte
	PTS, DTS time.Duration
	Duration time.Duration
	Delta    bool // not a keyframe
}

func clockTime(d time.Duration) gst.ClockTime {
	if d < 0 {
		return gst.ClockTimeNone
	}
	return gst.ClockTime(d)
}

// Push copies b into a new buffer and queues it. It fails once the pipeline is flushing or
// has stopped.
func (s *AppSrc) Push(b Buffer) error {
	if len(b.Data) == 0 {
		return nil
	}
	buf := gst.NewBufferFromBytes(b.Data)
	buf.SetPresentationTimestamp(clockTime(b.PTS))
	setDTS(buf, clockTime(b.DTS))
	buf.SetDuration(clockTime(b.Duration))
	if b.Delta {
		buf.SetFlags(gst.BufferFlagDeltaUnit)
	}
	if ret := s.src.PushBuffer(buf); ret != gst.FlowOK {
		return fmt.Errorf("pipeline %s: push: %s", s.p.opts.Name, ret)
	}
	return nil
}

// EndOfStream tells the pipeline that no more buffers will come.
func (s *AppSrc) EndOfStream() error {
	if ret := s.src.EndStream(); ret != gst.FlowOK {
		return fmt.Errorf("pipeline %s: end of stream: %s", s.p.opts.Name, ret)
	}
	return nil
}

// QueuedBytes returns how many bytes the appsrc holds, not yet taken by the pipeline.
func (s *AppSrc) QueuedBytes() uint64 {
	return s.src.GetCurrentLevelBytes()
}
