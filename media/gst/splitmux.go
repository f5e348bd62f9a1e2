package gst

import (
	"fmt"
	"time"

	"github.com/go-gst/go-gst/gst"
)

// NameSegments makes the splitmuxsink named element ask name for each new file's path,
// instead of numbering files from zero on every start (which would overwrite them). name
// gets the fragment's index and the PTS of its first buffer (NoTime when unknown):
// splitmuxsink opens a file a GOP after its first keyframe went in, so the caller cannot
// tell which keyframe starts the file otherwise.
func (p *Pipeline) NameSegments(element string, name func(fragment uint, firstPTS time.Duration) string) error {
	e, err := p.element(element)
	if err != nil {
		return err
	}
	if _, err := e.Connect("format-location-full", func(_ *gst.Element, fragment uint, first *gst.Sample) string {
		pts := NoTime
		if first != nil {
			if buf := first.GetBuffer(); buf != nil {
				pts = clock(buf.PresentationTimestamp())
			}
		}
		return name(fragment, pts)
	}); err != nil {
		return fmt.Errorf("pipeline %s: element %s: %w", p.opts.Name, element, err)
	}
	return nil
}
