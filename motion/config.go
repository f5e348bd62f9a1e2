package motion

import "github.com/edgecam/edgecam/config"

// FromConfig returns the detector and gate options of a configuration: media.analysis for
// the frame size, motion for the rest (masks in 0..1 coordinates).
func FromConfig(c config.Config) (Options, GateOptions) {
	m := c.Motion
	o := Options{
		Width: c.Media.Analysis.Width, Height: c.Media.Analysis.Height,
		// GStreamer's GRAY8 rows are padded to 4 bytes; the frames carry their real stride.
		Stride:      (c.Media.Analysis.Width + 3) &^ 3,
		Sensitivity: m.Sensitivity, MaskUnits: Normalized,
	}
	for _, r := range m.Masks {
		o.Masks = append(o.Masks, Rect{X: r.X, Y: r.Y, W: r.W, H: r.H})
	}
	for _, poly := range m.Polygons {
		var p Polygon
		for _, pt := range poly {
			if len(pt) == 2 {
				p = append(p, Point{X: pt[0], Y: pt[1]})
			}
		}
		o.MaskPolygons = append(o.MaskPolygons, p)
	}
	return o, GateOptions{StartFrames: m.StartFrames, PreRoll: m.PreRoll, PostRoll: m.PostRoll, EventGap: m.EventGap}
}
