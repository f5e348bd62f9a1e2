package gst

import (
	"fmt"
	"time"

	"github.com/go-gst/go-gst/gst"
	"github.com/go-gst/go-gst/gst/app"
)

// NoTime marks an unknown timestamp or duration.
const NoTime time.Duration = -1

// Sample is one buffer pulled from an appsink, copied out of GStreamer's memory.
type Sample struct {
	Data          []byte
	PTS, DTS      time.Duration // NoTime when unknown
	Duration      time.Duration // NoTime when unknown
	Delta         bool          // GStreamer's DELTA_UNIT flag (not a keyframe, as the element sees it)
	Width, Height int           // from raw video caps; 0 for encoded video
}

func clock(t gst.ClockTime) time.Duration {
	if t == gst.ClockTimeNone {
		return NoTime
	}
	return time.Duration(t)
}

// OnSample calls fn for every buffer reaching the appsink named sink. fn runs on a GStreamer
// streaming thread: it must not block. Call it before Run.
func (p *Pipeline) OnSample(sink string, fn func(Sample)) error {
	e, err := p.element(sink)
	if err != nil {
		return err
	}
	if e.GetFactory().GetName() != "appsink" {
		return fmt.Errorf("pipeline %s: element %s is a %s, not an appsink", p.opts.Name, sink, e.GetFactory().GetName())
	}
	s := app.SinkFromElement(e)
	var caps *gst.Caps
	var width, height int
	s.SetCallbacks(&app.SinkCallbacks{
		NewSampleFunc: func(s *app.Sink) gst.FlowReturn {
			sample := s.PullSample()
			if sample == nil {
				return gst.FlowEOS
			}
			buf := sample.GetBuffer()
			if buf == nil {
				return gst.FlowOK
			}
			// Caps change rarely: read the frame size only when they do.
			if c := sample.GetCaps(); c != nil && (caps == nil || !c.IsEqual(caps)) {
				caps = c
				width, height = capsSize(c)
			}
			fn(Sample{
				Data:     buf.Bytes(),
				PTS:      clock(buf.PresentationTimestamp()),
				DTS:      clock(buf.DecodingTimestamp()),
				Duration: clock(buf.Duration()),
				Delta:    buf.HasFlags(gst.BufferFlagDeltaUnit),
				Width:    width,
				Height:   height,
			})
			return gst.FlowOK
		},
	})
	p.mu.Lock()
	p.sinks = append(p.sinks, s)
	p.mu.Unlock()
	return nil
}

func capsSize(c *gst.Caps) (w, h int) {
	if c.GetSize() == 0 {
		return 0, 0
	}
	st := c.GetStructureAt(0)
	if v, err := st.GetValue("width"); err == nil {
		w, _ = v.(int)
	}
	if v, err := st.GetValue("height"); err == nil {
		h, _ = v.(int)
	}
	return w, h
}
