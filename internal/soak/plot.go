package soak

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Plot writes the samples as an SVG: one panel per column, time (minutes since the agent
// started) on x; the baseline and final windows shaded, localcloud's restart marked.
func Plot(w io.Writer, title string, samples []Sample, r Observed, c Criteria) error {
	const (
		width   = 1000
		left    = 200
		right   = 20
		top     = 60
		panelH  = 70
		gap     = 16
		plotW   = width - left - right
		tickLen = 4
	)
	end := time.Duration(0)
	if len(samples) > 0 {
		end = samples[len(samples)-1].T
	}
	if end <= 0 {
		end = time.Second
	}
	x := func(t time.Duration) float64 { return left + float64(plotW)*t.Seconds()/end.Seconds() }
	height := top + len(columns)*(panelH+gap) + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i, line := range strings.Split(title, "\n") {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-size="13">%s</text>`+"\n", 18+16*i, html.EscapeString(line))
	}
	step := tickStep(end)
	for i, col := range columns {
		y0 := float64(top + i*(panelH+gap))
		y1 := y0 + panelH
		// Windows and events behind the data.
		fFrom := max(end-c.Final, 0)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#dde8ff"/>`+"\n", x(c.Warmup), y0, x(c.Warmup+c.Baseline)-x(c.Warmup), panelH)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#ffe8cc"/>`+"\n", x(fFrom), y0, x(end)-x(fFrom), panelH)
		if r.RestartUp > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#ffcccc"/>`+"\n", x(r.RestartDown), y0, max(x(r.RestartUp)-x(r.RestartDown), 1), panelH)
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", left, y0, plotW, panelH)
		lo, _, hi := stats(samples, col.get)
		label := col.name
		if col.unit != "" {
			label += " (" + col.unit + ")"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" font-weight="bold">%s</text>`+"\n", left-8, y0+panelH/2, html.EscapeString(label))
		if math.IsNaN(lo) {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#888">no data</text>`+"\n", left+8, y0+panelH/2)
			continue
		}
		if hi == lo {
			hi, lo = hi+1, lo-1
			if lo < 0 && *col.get(&samples[0]) >= 0 {
				lo, hi = 0, hi+1
			}
		}
		yv := func(v float64) float64 { return y1 - 4 - (panelH-8)*(v-lo)/(hi-lo) }
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", left-8, y0+10, short(hi))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", left-8, y1-2, short(lo))
		// The data: polylines broken where a value is missing.
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f5fbf" stroke-width="1.3" points="%s"/>`+"\n", strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for j := range samples {
			v := *col.get(&samples[j])
			if math.IsNaN(v) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(samples[j].T), yv(v)))
		}
		flush()
		for t := time.Duration(0); t <= end; t += step {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`+"\n", x(t), y1, x(t), y1+tickLen)
			if i == len(columns)-1 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(t), y1+16, minutes(t))
			}
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">minutes since the agent started (blue: baseline window, orange: final window, red: localcloud down)</text>`+"\n",
		left+plotW/2, height-4)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func tickStep(end time.Duration) time.Duration {
	for _, s := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute} {
		if end/s <= 12 {
			return s
		}
	}
	return time.Hour
}

func minutes(t time.Duration) string {
	m := t.Minutes()
	if m == math.Trunc(m) {
		return fmt.Sprintf("%.0f", m)
	}
	return fmt.Sprintf("%.1f", m)
}

func short(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return fmt.Sprintf("%.1fG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a == math.Trunc(a):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}
