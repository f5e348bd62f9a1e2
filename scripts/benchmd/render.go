package main

import (
	"fmt"
	"io"
	"strings"
)

// machine describes where and when the figures were taken.
type machine struct {
	CPU, Cores, Memory, OS, Kernel, Go, GStreamer, Chromium, Commit string
	Date, Duration, LoadStart, LoadEnd, Mode                        string
}

// outcome is what one job's run left: its figures, and notes for benchmarks that have none.
type outcome struct {
	Results results
	Notes   map[string]string // benchmark → skipped / failed
	Err     string            // the command failed (short reason), or ""
}

// render writes BENCHMARKS.md. Its layout depends only on the jobs: a run on another
// machine, or a second run, changes the header's values and the figure cells alone.
func render(w io.Writer, m machine, js []job, outs map[string]outcome) error {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Written by `make bench` (`scripts/benchmd`): do not edit by hand, run it again. Each figure is the\n" +
		"median of the runs its command made (`-count`), with their range in brackets when they differ; every\n" +
		"table row names the exact command that measured it (run from the repository's root). The end-to-end\n" +
		"figures (provisioning, time to first frame, agent CPU and RSS) depend on how busy the machine was: the\n" +
		"load average below says how loaded it was, and on a loaded machine they are noisy (±30 % and more).\n\n")
	b.WriteString("| machine | |\n|---|---|\n")
	for _, kv := range [][2]string{
		{"CPU", m.CPU}, {"cores", m.Cores}, {"memory", m.Memory}, {"OS", m.OS}, {"kernel", m.Kernel},
		{"Go", m.Go}, {"GStreamer", m.GStreamer}, {"Chromium", m.Chromium}, {"commit", m.Commit},
		{"date (UTC)", m.Date}, {"wall time of make bench", m.Duration},
		{"load average (1, 5, 15 min) at start", m.LoadStart}, {"load average (1, 5, 15 min) at end", m.LoadEnd},
		{"settings", m.Mode},
	} {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], cell(kv[1]))
	}
	for _, j := range js {
		o := outs[j.ID]
		if j.Title != "" {
			fmt.Fprintf(&b, "\n## %s\n\n", j.Title)
		}
		if j.About != "" {
			b.WriteString(wrap(j.About, 100))
			b.WriteString("\n\n")
		}
		b.WriteString("| figure |")
		for _, c := range j.Columns {
			fmt.Fprintf(&b, " %s |", c.Header)
		}
		b.WriteString(" runs | command |\n|---|")
		for range j.Columns {
			b.WriteString("---|")
		}
		b.WriteString("---|---|\n")
		for _, r := range j.Rows {
			fmt.Fprintf(&b, "| %s |", r.Label)
			for _, c := range j.Columns {
				fmt.Fprintf(&b, " %s |", cell(figureCell(o, r.Bench, c)))
			}
			fmt.Fprintf(&b, " %d | `%s` |\n", j.Runs, strings.ReplaceAll(j.Command(), "|", `\|`))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// figureCell is a table cell: the figure, or why there is none.
func figureCell(o outcome, bench string, c column) string {
	if vs := o.Results[bench][c.Metric]; len(vs) > 0 {
		return figure(vs, c.Scale)
	}
	switch {
	case o.Notes[bench] != "":
		return o.Notes[bench]
	case o.Results[bench] != nil:
		return "—" // the benchmark does not report this metric
	case o.Err != "":
		return "failed"
	default:
		return "no figure"
	}
}

func cell(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

// wrap breaks text into lines of at most width characters.
func wrap(text string, width int) string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}
