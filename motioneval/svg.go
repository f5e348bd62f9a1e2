package motioneval

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html"
	"image"
	"image/png"
	"io"
	"path/filepath"
	"strings"
)

// maxThumbs is how many events get a thumbnail with their region boxes.
const maxThumbs = 4

// scoreColour tells strong motion from marginal: grey below the threshold, orange just
// above it, red when clear.
func scoreColour(s, threshold float64) string {
	switch {
	case s < threshold:
		return "#999"
	case s < threshold+0.15:
		return "#e80"
	default:
		return "#d11"
	}
}

// WriteSVG draws the score timeline: the score per analysed frame coloured by strength, the
// motion threshold, the warm-up, labelled intervals (green), detected events (blue) and the
// recordings they make (light blue), illumination changes, a legend, and a thumbnail of the
// strongest frame of the first events with their moving regions boxed.
func (r *Report) WriteSVG(w io.Writer) error {
	const (
		width         = 1200.0
		left, right   = 60.0, 20.0
		top, plotH    = 70.0, 220.0
		bandY, bandH  = top + plotH + 12, 14.0
		recY          = bandY + bandH + 4
		axisY         = recY + bandH/2 + 18
		thumbY        = axisY + 40
		thumbW        = 260.0
		tickEvery     = 5.0
		scoreTop      = 1.0
		legendY       = top - 14
		thumbGap      = 20.0
		thumbCaptionH = 16.0
	)
	thumbs := 0
	for _, e := range r.Events {
		if len(e.Thumb) > 0 && thumbs < maxThumbs {
			thumbs++
		}
	}
	height := axisY + 20
	thumbH := 0.0
	if thumbs > 0 {
		thumbH = thumbW * 9 / 16
		for _, e := range r.Events {
			if e.ThumbW > 0 {
				thumbH = thumbW * float64(e.ThumbH) / float64(e.ThumbW)
				break
			}
		}
		height = thumbY + thumbCaptionH + thumbH + 10
	}
	dur := max(r.Duration, 1e-3)
	x := func(t float64) float64 { return left + (width-left-right)*t/dur }
	y := func(s float64) float64 { return top + plotH*(1-s/scoreTop) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="#fff"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%g" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(filepath.Base(r.Video)))
	fmt.Fprintf(&b, `<text x="%g" y="38">%s</text>`+"\n", left, html.EscapeString(r.Summary()))

	// Legend.
	lx := left
	item := func(swatch, label string) {
		fmt.Fprintf(&b, `<g transform="translate(%.1f,%g)">%s<text x="22" y="4">%s</text></g>`+"\n", lx, legendY, swatch, html.EscapeString(label))
		lx += 36 + 6.8*float64(len(label))
	}
	item(`<rect x="0" y="-5" width="16" height="10" fill="#eee" stroke="#bbb"/>`, "warm-up")
	item(`<rect x="0" y="-5" width="16" height="10" fill="#2a2" opacity="0.25"/>`, "labelled motion")
	item(`<line x1="0" y1="0" x2="16" y2="0" stroke="#d22" stroke-dasharray="4 3"/>`, fmt.Sprintf("threshold %.2f", r.Threshold))
	item(`<circle cx="8" cy="0" r="3" fill="#999"/>`, "below")
	item(`<circle cx="8" cy="0" r="3" fill="#e80"/>`, "marginal motion")
	item(`<circle cx="8" cy="0" r="3" fill="#d11"/>`, "strong motion")
	item(`<rect x="0" y="-5" width="16" height="10" fill="#25c"/>`, "event")
	item(`<rect x="0" y="-2" width="16" height="5" fill="#9bd"/>`, "recording")
	item(`<rect x="5" y="-3" width="6" height="6" fill="#93c" transform="rotate(45 8 0)"/>`, "illumination change")

	if r.WarmupEnd > 0 {
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%.1f" height="%g" fill="#eee"><title>warm-up: the background is learnt until %.1f s</title></rect>`+"\n",
			left, top, x(r.WarmupEnd)-left, plotH, r.WarmupEnd)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" fill="#888">warm-up</text>`+"\n", left+3, top+14)
	}
	for _, l := range r.Labels {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%g" width="%.1f" height="%g" fill="#2a2" opacity="0.18"><title>labelled motion %.1f–%.1f s</title></rect>`+"\n",
			x(l.Start), top, x(l.End)-x(l.Start), plotH, l.Start, l.End)
	}
	for i, e := range r.Events {
		title := fmt.Sprintf("event %d: %.1f–%.1f s, peak %.2f", i+1, e.Start, e.End, e.PeakScore)
		if e.HasLatency {
			title += fmt.Sprintf(", latency %.1f s", e.Latency)
		}
		if e.Long {
			title += ", longer than 90% of the video"
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%g" width="%.1f" height="%g" fill="#25c"><title>%s</title></rect>`+"\n",
			x(e.Start), bandY, max(1, x(e.End)-x(e.Start)), bandH, html.EscapeString(title))
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" fill="#fff" font-size="10">%d</text>`+"\n", x(e.Start)+2, bandY+11, i+1)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%g" width="%.1f" height="%g" fill="#9bd"><title>recording %.1f–%.1f s</title></rect>`+"\n",
			x(e.RecordFrom), recY, max(1, x(e.RecordTo)-x(e.RecordFrom)), bandH/2, e.RecordFrom, e.RecordTo)
	}
	// Axes, ticks and titles.
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#888"/>`+"\n", left, top+plotH, width-right, top+plotH)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#888"/>`+"\n", left, top, left, top+plotH)
	step := tickEvery
	for dur/step > 24 {
		step *= 2
	}
	for t := 0.0; t <= dur; t += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#eee"/><text x="%.1f" y="%g" text-anchor="middle" fill="#555">%g</text>`+"\n",
			x(t), top, x(t), top+plotH, x(t), axisY, t)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle" fill="#333">time (s) — events (blue, numbered) and the recordings they make (light blue) below the plot</text>`+"\n",
		(left+width-right)/2, axisY+16)
	for _, s := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" text-anchor="end" fill="#555">%.2f</text>`+"\n", left-6, y(s)+4, s)
	}
	fmt.Fprintf(&b, `<text x="14" y="%g" transform="rotate(-90 14 %g)" text-anchor="middle" fill="#333">motion score</text>`+"\n", top+plotH/2, top+plotH/2)
	fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#d22" stroke-dasharray="6 4"><title>motion threshold %.2f</title></line>`+"\n",
		left, y(r.Threshold), width-right, y(r.Threshold), r.Threshold)
	// The score: a thin line, and a dot per frame coloured by strength.
	var pts strings.Builder
	for _, f := range r.Frames {
		fmt.Fprintf(&pts, "%.1f,%.1f ", x(f.At), y(f.Result.Score))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#555" stroke-width="0.8"/>`+"\n", strings.TrimSpace(pts.String()))
	for _, f := range r.Frames {
		if f.Result.Score <= 0 {
			continue
		}
		rad := 1.5
		if f.Result.Motion {
			rad = 2.5
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%g" fill="%s"/>`+"\n", x(f.At), y(f.Result.Score), rad, scoreColour(f.Result.Score, r.Threshold))
	}
	for _, f := range r.Frames {
		if f.Result.Illumination {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%g" width="6" height="6" fill="#93c" transform="rotate(45 %.1f %g)"><title>illumination change at %.1f s</title></rect>`+"\n",
				x(f.At)-3, top+plotH-7, x(f.At), top+plotH-4, f.At)
		}
	}
	// Thumbnails of the strongest frame of the first events, with the regions that moved.
	n := 0
	for i, e := range r.Events {
		if len(e.Thumb) == 0 || n >= maxThumbs {
			continue
		}
		tx := left + float64(n)*(thumbW+thumbGap)
		n++
		uri, err := pngURI(e.Thumb, e.ThumbW, e.ThumbH)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%g">event %d at %.1f s (score %.2f)</text>`+"\n", tx, thumbY+12, i+1, e.PeakAt, e.PeakScore)
		ty := thumbY + thumbCaptionH
		fmt.Fprintf(&b, `<image x="%.1f" y="%g" width="%g" height="%.1f" href="%s"/>`+"\n", tx, ty, thumbW, thumbH, uri)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%g" width="%g" height="%.1f" fill="none" stroke="#888"/>`+"\n", tx, ty, thumbW, thumbH)
		for _, g := range e.Regions {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#f22" stroke-width="2"><title>moving region, %.2f%% of the area, followed for %d frames</title></rect>`+"\n",
				tx+g.X*thumbW, ty+g.Y*thumbH, max(2, g.W*thumbW), max(2, g.H*thumbH), 100*g.Area, g.Frames)
		}
	}
	b.WriteString(`</svg>` + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// pngURI encodes a GRAY8 picture as a PNG data URI.
func pngURI(pix []byte, w, h int) (string, error) {
	img := image.NewGray(image.Rect(0, 0, w, h))
	copy(img.Pix, pix)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// Summary is a one-line outcome.
func (r *Report) Summary() string {
	s := fmt.Sprintf("%d events", len(r.Events))
	if r.Labels != nil {
		s += fmt.Sprintf(", precision %.2f, recall %.2f, frames: precision %.2f recall %.2f FP rate %.1f%%",
			r.Precision, r.Recall, r.FramePrecision, r.FrameRecall, 100*r.FrameFPRate)
		for _, e := range r.Events {
			if e.HasLatency {
				s += fmt.Sprintf(", max latency %.1f s", r.MaxLatency)
				break
			}
		}
		s += fmt.Sprintf(", recorded outside labels %.1f s", r.RecordedOutside)
	}
	if r.ContinuousBytes > 0 {
		s += fmt.Sprintf(", gated bytes %.1f%% of continuous", 100*float64(r.GatedBytes)/float64(r.ContinuousBytes))
	}
	for _, e := range r.Events {
		if e.Long {
			s += " — an event covers over 90% of the video"
			break
		}
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
		fmt.Fprintf(w, "  %d. %.1f s – %.1f s (recorded %.1f s – %.1f s), peak score %.2f, area %.2f%%",
			i+1, e.Start, e.End, e.RecordFrom, e.RecordTo, e.PeakScore, 100*e.PeakArea)
		switch {
		case e.HasLatency:
			fmt.Fprintf(w, ", latency %.1f s", e.Latency)
		case r.Labels != nil:
			fmt.Fprint(w, ", outside every label")
		}
		if e.Long {
			fmt.Fprint(w, ", WARNING: longer than 90% of the video (gating saves nothing)")
		}
		fmt.Fprintln(w)
		for _, g := range e.Regions {
			fmt.Fprintf(w, "     region x %.2f y %.2f w %.2f h %.2f (%.2f%% of the area)\n", g.X, g.Y, g.W, g.H, 100*g.Area)
		}
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
		fmt.Fprintf(w, "events: precision %.2f (false events: %d), recall %.2f (missed: %d), max latency %.1f s\n",
			r.Precision, len(r.FalseEvents), r.Recall, len(r.Missed), r.MaxLatency)
		fmt.Fprintf(w, "frames: precision %.2f, recall %.2f, false-positive rate %.1f%%; recorded outside labels %.1f s\n",
			r.FramePrecision, r.FrameRecall, 100*r.FrameFPRate, r.RecordedOutside)
	}
	fmt.Fprintf(w, "bytes: continuous %s, motion-gated %s (%.1f%% of continuous)",
		kb(r.ContinuousBytes), kb(r.GatedBytes), 100*float64(r.GatedBytes)/float64(max(1, r.ContinuousBytes)))
	if r.Labels != nil {
		fmt.Fprintf(w, "; labels with pre-roll, post-roll and gap %.1f%%", 100*float64(r.IdealBytes)/float64(max(1, r.ContinuousBytes)))
	}
	fmt.Fprintln(w)
}

func kb(n int64) string { return fmt.Sprintf("%.1f kB", float64(n)/1000) }
