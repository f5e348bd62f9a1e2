package gst

import (
	"fmt"

	"github.com/go-gst/go-gst/gst"
)

// NameSegments makes the splitmuxsink named element ask name for each new file's path,
// instead of numbering files from zero on every start (which would overwrite them).
func (p *Pipeline) NameSegments(element string, name func(fragment uint) string) error {
	e, err := p.element(element)
	if err != nil {
		return err
	}
	if _, err := e.Connect("format-location", func(_ *gst.Element, fragment uint) string {
		return name(fragment)
	}); err != nil {
		return fmt.Errorf("pipeline %s: element %s: %w", p.opts.Name, element, err)
	}
	return nil
}
