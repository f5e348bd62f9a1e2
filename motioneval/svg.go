package motioneval

import (
	"fmt"
	"html"
	"io"
	"path/filepath"
	"strings"
)

// WriteSVG draws the score timeline: the score per analysed frame, the motion threshold,
// labelled intervals (green), detected events (blue) and the recordings they make (light
// blue), with a one-line summary on top.
func (r *Report) WriteSVG(w io.Writer) error {
	const (
		width, height         = 1200.0, 360.0
		left, right           = 50.0, 20.0
		top, plotH            = 60.0, 220.0
		bandY, bandH          = top + plotH + 12, 14.0
		recY                  = bandY + bandH + 4
		tickEvery             = 5.0
		scoreTop      float64 = 1
	)
	dur := max(r.Duration, 1e-3)
	x := func(t float64) float64 { return left + (width-left-right)*t/dur }
	y := func(s float64) float64 { return top + plotH*(1-s/scoreTop) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="#fff"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%g" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(filepath.Base(r.Video)))
	fmt.Fprintf(&b, `<text x="%g" y="40">%s</text>`+"\n", left, html.EscapeString(r.Summary()))
	for _, l := range r.Labels {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%g" width="%.1f" height="%g" fill="#2a2" opacity="0.18"><title>labelled motion %.1f–%.1f s</title></rect>`+"\n",
			x(l.Start), top, x(l.End)-x(l.Start), plotH, l.Start, l.End)
	}
	for i, e := range r.Events {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%g" width="%.1f" height="%g" fill="#25c"><title>event %d: %.1f–%.1f s, peak %.2f</title></rect>`+"\n",
			x(e.Start), bandY, max(1, x(e.End)-x(e.Start)), bandH, i+1, e.Start, e.End, e.PeakScore)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%g" width="%.1f" height="%g" fill="#9bd"><title>recording %.1f–%.1f s</title></rect>`+"\n",
			x(e.RecordFrom), recY, max(1, x(e.RecordTo)-x(e.RecordFrom)), bandH/2, e.RecordFrom, e.RecordTo)
	}
	// Axes and ticks.
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#888"/>`+"\n", left, top+plotH, width-right, top+plotH)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#888"/>`+"\n", left, top, left, top+plotH)
	step := tickEvery
	for dur/step > 24 {
		step *= 2
	}
	for t := 0.0; t <= dur; t += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#eee"/><text x="%.1f" y="%g" text-anchor="middle" fill="#555">%gs</text>`+"\n",
			x(t), top, x(t), top+plotH, x(t), height-8, t)
	}
	for _, s := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" text-anchor="end" fill="#555">%.2f</text>`+"\n", left-6, y(s)+4, s)
	}
	fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#d22" stroke-dasharray="6 4"><title>motion threshold %.2f</title></line>`+"\n",
		left, y(r.Threshold), width-right, y(r.Threshold), r.Threshold)
	// The score.
	var pts strings.Builder
	for _, f := range r.Frames {
		fmt.Fprintf(&pts, "%.1f,%.1f ", x(f.At), y(f.Result.Score))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#222" stroke-width="1.2"/>`+"\n", strings.TrimSpace(pts.String()))
	for _, f := range r.Frames {
		if f.Result.Illumination {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%g" r="3" fill="#e90"><title>illumination change at %.1f s</title></circle>`+"\n", x(f.At), top+plotH-4, f.At)
		}
	}
	b.WriteString(`</svg>` + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Summary is a one-line outcome.
func (r *Report) Summary() string {
	s := fmt.Sprintf("%d events", len(r.Events))
	if r.Labels != nil {
		s += fmt.Sprintf(", precision %.2f, recall %.2f", r.Precision, r.Recall)
	}
	if r.ContinuousBytes > 0 {
		s += fmt.Sprintf(", gated bytes %.1f%% of continuous", 100*float64(r.GatedBytes)/float64(r.ContinuousBytes))
	}
	return s
}

// WriteText prints the report for a person.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "motion eval: %s (%.1f s, %d analysis frames at %.1f fps, detector %.0f µs/frame)\n",
		r.Video, r.Duration, len(r.Frames), r.AnalysisFPS, r.DetectorMicros)
	if len(r.Events) == 0 {
		fmt.Fprintln(w, "events: none")
	} else {
		fmt.Fprintln(w, "events:")
	}
	for i, e := range r.Events {
		fmt.Fprintf(w, "  %d. %.1f s – %.1f s (recorded %.1f s – %.1f s), peak score %.2f, area %.2f%%\n",
			i+1, e.Start, e.End, e.RecordFrom, e.RecordTo, e.PeakScore, 100*e.PeakArea)
	}
	if r.Labels != nil {
		var ls []string
		for _, l := range r.Labels {
			ls = append(ls, fmt.Sprintf("%g–%g s", l.Start, l.End))
		}
		if len(ls) == 0 {
			ls = []string{"none"}
		}
		fmt.Fprintf(w, "labels: %s\n", strings.Join(ls, ", "))
		fmt.Fprintf(w, "precision %.2f (false events: %d), recall %.2f (missed: %d)\n", r.Precision, len(r.FalseEvents), r.Recall, len(r.Missed))
	}
	fmt.Fprintf(w, "bytes: continuous %s, motion-gated %s (%.1f%% of continuous)\n",
		kb(r.ContinuousBytes), kb(r.GatedBytes), 100*float64(r.GatedBytes)/float64(max(1, r.ContinuousBytes)))
}

func kb(n int64) string { return fmt.Sprintf("%.1f kB", float64(n)/1000) }
