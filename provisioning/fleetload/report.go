package fleetload

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteText writes the report for people: counts, rates, latency percentiles per phase and
// the failures grouped by message.
func (r *Report) WriteText(w io.Writer) error {
	rate := "unlimited"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%g devices/s", r.Rate)
	}
	fmt.Fprintf(w, "devices:    %d ok, %d failed (of %d; rate %s, concurrency %d)\n", r.OK, r.Failed, r.Devices, rate, r.Concurrency)
	fmt.Fprintf(w, "elapsed:    %.2f s from the first start to the last finish\n", r.Elapsed.Seconds())
	fmt.Fprintf(w, "started:    %.1f devices/s\n", r.StartRate)
	fmt.Fprintf(w, "throughput: %.1f devices/s through every phase\n", r.Throughput)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tcount\tp50\tp90\tp99\tmax\t")
	for _, row := range []struct {
		name string
		p    Percentiles
	}{
		{"provision (CSR + RegisterThing)", r.Provision},
		{"connect as thing", r.Connect},
		{"status publish to PUBACK", r.Status},
		{"whole device", r.Total},
	} {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", row.name, row.p.Count, ms(row.p.P50), ms(row.p.P90), ms(row.p.P99), ms(row.p.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Failures) == 0 {
		_, err := fmt.Fprintln(w, "failures:   none")
		return err
	}
	fmt.Fprintln(w, "failures (by phase and message, most frequent first):")
	for _, g := range r.Failures {
		fmt.Fprintf(w, "  %d × %s: %s\n", g.Count, g.Phase, g.Message)
		fmt.Fprintf(w, "      e.g. %v\n", g.Serials)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
