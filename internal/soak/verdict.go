package soak

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// ViewerRecord is one viewer session of the driver.
type ViewerRecord struct {
	ID     string
	Joined time.Duration // since the agent started
	// Video is how long after Joined the first keyframe arrived; negative: never.
	Video    time.Duration
	Attempts int
	Frames   int // decodable frames received while held
	Err      string
}

// Observed is what a soak observed, for Judge.
type Observed struct {
	Samples []Sample
	Viewers []ViewerRecord
	// RestartDown and RestartUp are when localcloud stopped and came back (0: no restart).
	RestartDown, RestartUp time.Duration
	// AgentExit describes an agent exit before the end ("" when it ran throughout).
	AgentExit string
	// Shutdown describes an unclean end ("" when SIGTERM ended the agent with status 0).
	Shutdown string
	// CredentialLifetime of the credentials localcloud issued.
	CredentialLifetime time.Duration
}

// Criteria are the verdict's limits; windows are measured from the agent's start.
type Criteria struct {
	// Warmup is left out of the growth measure; Baseline is the window after it the end is
	// compared with, Final the window at the end (medians of both).
	Warmup, Baseline, Final time.Duration
	// MaxGrowth is the largest allowed growth of RSS, goroutines and open files (0.10: 10 %).
	MaxGrowth float64
	// MotionGap is the longest time after Warmup without a new motion event.
	MotionGap time.Duration
}

// CriteriaFor scales the 30-minute soak's windows (5 min warm-up, 3-minute medians) to d.
func CriteriaFor(d time.Duration) Criteria {
	return Criteria{Warmup: d / 6, Baseline: d / 10, Final: d / 10, MaxGrowth: 0.10, MotionGap: 2 * time.Minute}
}

// Growth is one metric's growth between the baseline and final windows.
type Growth struct {
	Metric          string
	Baseline, Final float64 // medians
	Fraction        float64 // (Final-Baseline)/Baseline
	OK              bool
}

// Verdict is the soak's result.
type Verdict struct {
	Pass     bool
	Failures []string
	Growth   []Growth
	Notes    []string
}

func median(v []float64) float64 {
	var xs []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// window returns one column's values with from <= T <= to.
func window(samples []Sample, get func(*Sample) *float64, from, to time.Duration) []float64 {
	var out []float64
	for i := range samples {
		if samples[i].T >= from && samples[i].T <= to {
			out = append(out, *get(&samples[i]))
		}
	}
	return out
}

func col(name string) func(*Sample) *float64 {
	for _, c := range columns {
		if c.name == name {
			return c.get
		}
	}
	panic("soak: no column " + name)
}

// stats returns min, median and max of a column's values.
func stats(samples []Sample, get func(*Sample) *float64) (lo, med, hi float64) {
	lo, hi = math.NaN(), math.NaN()
	var all []float64
	for i := range samples {
		v := *get(&samples[i])
		if math.IsNaN(v) {
			continue
		}
		all = append(all, v)
		if math.IsNaN(lo) || v < lo {
			lo = v
		}
		if math.IsNaN(hi) || v > hi {
			hi = v
		}
	}
	return lo, median(all), hi
}

// last returns a column's last value that is not NaN.
func last(samples []Sample, get func(*Sample) *float64) float64 {
	for i := len(samples) - 1; i >= 0; i-- {
		if v := *get(&samples[i]); !math.IsNaN(v) {
			return v
		}
	}
	return math.NaN()
}

// Judge applies c to r.
func Judge(r Observed, c Criteria) Verdict {
	var v Verdict
	fail := func(format string, a ...any) { v.Failures = append(v.Failures, fmt.Sprintf(format, a...)) }
	note := func(format string, a ...any) { v.Notes = append(v.Notes, fmt.Sprintf(format, a...)) }
	if r.AgentExit != "" {
		fail("the agent exited before the end: %s", r.AgentExit)
	}
	if r.Shutdown != "" {
		fail("the agent did not shut down cleanly on SIGTERM: %s", r.Shutdown)
	}
	if len(r.Samples) < 2 {
		fail("only %d samples: the agent did not run long enough to judge", len(r.Samples))
		return v
	}
	end := r.Samples[len(r.Samples)-1].T

	// Growth after the warm-up: median of the final window against the baseline window.
	bFrom, bTo := c.Warmup, c.Warmup+c.Baseline
	fFrom := end - c.Final
	for _, name := range []string{"rss_mb", "goroutines", "open_fds"} {
		get := col(name)
		base, fin := median(window(r.Samples, get, bFrom, bTo)), median(window(r.Samples, get, fFrom, end))
		g := Growth{Metric: name, Baseline: base, Final: fin, Fraction: (fin - base) / base}
		switch {
		case math.IsNaN(base) || math.IsNaN(fin) || base <= 0:
			fail("%s: no samples in the baseline (%s-%s) or final (%s-%s) window", name, rnd(bFrom), rnd(bTo), rnd(fFrom), rnd(end))
		case g.Fraction >= c.MaxGrowth:
			fail("%s grew %+.1f %% (median %.1f over %s-%s, %.1f over %s-%s; limit %+.0f %%)", name, 100*g.Fraction, base, rnd(bFrom), rnd(bTo), fin, rnd(fFrom), rnd(end), 100*c.MaxGrowth)
		default:
			g.OK = true
		}
		v.Growth = append(v.Growth, g)
	}

	// The spool drains: uploads keep up once the warm-up (and a restart's backlog) is over.
	sb := median(window(r.Samples, col("spool_fragments"), bFrom, bTo))
	sf := median(window(r.Samples, col("spool_fragments"), fFrom, end))
	if !math.IsNaN(sf) && sf > max(10, 2*sb) {
		fail("the upload spool does not drain: median %.0f fragments waiting over the final window (baseline %.0f)", sf, sb)
	}

	// Viewers: every one gets video.
	if len(r.Viewers) == 0 {
		fail("no viewer joined")
	}
	withVideo := 0
	for _, vr := range r.Viewers {
		if vr.Video < 0 {
			fail("viewer %s (joined at %s, %d attempts) never got video: %s", vr.ID, rnd(vr.Joined), vr.Attempts, vr.Err)
		} else {
			withVideo++
		}
	}

	// Motion events keep coming, and reach the broker.
	var motionAt []time.Duration
	prev := math.NaN()
	for _, s := range r.Samples {
		if !math.IsNaN(s.MotionEvents) {
			if !math.IsNaN(prev) && s.MotionEvents > prev || math.IsNaN(prev) && s.MotionEvents > 0 {
				motionAt = append(motionAt, s.T)
			}
			prev = s.MotionEvents
		}
	}
	agentEvents := last(r.Samples, col("motion_events"))
	brokerEvents := last(r.Samples, col("broker_events"))
	if math.IsNaN(agentEvents) || agentEvents == 0 {
		fail("no motion event: the agent started none")
	} else if gap := longestGap(motionAt, c.Warmup, end); gap > c.MotionGap && end-c.Warmup > c.MotionGap {
		fail("motion events stopped: %s without a new one after the warm-up (limit %s)", rnd(gap), rnd(c.MotionGap))
	}
	if !math.IsNaN(agentEvents) && (math.IsNaN(brokerEvents) || brokerEvents < agentEvents-2) {
		fail("motion events lost: the agent started %.0f, localcloud's broker received %.0f", agentEvents, brokerEvents)
	}

	// Credential rotation: the expiry jumps forward when the agent fetches new credentials.
	rotations := 0
	prev = math.NaN()
	for _, s := range r.Samples {
		if !math.IsNaN(s.CredExpiryS) {
			if !math.IsNaN(prev) && s.CredExpiryS > prev+1 {
				rotations++
			}
			prev = s.CredExpiryS
		}
	}
	if r.CredentialLifetime > 0 && end > r.CredentialLifetime && rotations == 0 {
		fail("no credential rotation seen in %s with credentials living %s", rnd(end), rnd(r.CredentialLifetime))
	}

	// The localcloud restart: MQTT, KVS uploads and live view come back.
	if r.RestartUp > 0 {
		connected, uploads := false, false
		kvsAt := math.NaN()
		for _, s := range r.Samples {
			if s.T < r.RestartUp {
				continue
			}
			if s.CloudConnected == 1 {
				connected = true
			}
			if !math.IsNaN(s.KVSFragments) {
				if math.IsNaN(kvsAt) {
					kvsAt = s.KVSFragments
				} else if s.KVSFragments > kvsAt {
					uploads = true
				}
			}
		}
		viewer := false
		for _, vr := range r.Viewers {
			if vr.Joined >= r.RestartUp && vr.Video >= 0 {
				viewer = true
			}
		}
		if !connected {
			fail("after localcloud's restart at %s the agent never reconnected to MQTT", rnd(r.RestartUp))
		}
		if !uploads {
			fail("after localcloud's restart at %s no fragment reached its KVS", rnd(r.RestartUp))
		}
		if !viewer && end-r.RestartUp > 2*time.Minute {
			fail("after localcloud's restart at %s no new viewer got video", rnd(r.RestartUp))
		}
		note("localcloud restart: down at %s, up at %s", rnd(r.RestartDown), rnd(r.RestartUp))
	}

	lo, med, hi := stats(r.Samples, col("load1"))
	note("machine load average (1 min) during the run: min %.1f, median %.1f, max %.1f", lo, med, hi)
	_, _, rssMax := stats(r.Samples, col("rss_mb"))
	note("agent RSS peak %.1f MB; threads median %.0f at the baseline, %.0f at the end", rssMax,
		median(window(r.Samples, col("threads"), bFrom, bTo)), median(window(r.Samples, col("threads"), fFrom, end)))
	var parts []string
	for _, name := range []string{"rss_anon_mb", "rss_file_mb", "go_heap_mb"} {
		b, f := median(window(r.Samples, col(name), bFrom, bTo)), median(window(r.Samples, col(name), fFrom, end))
		parts = append(parts, fmt.Sprintf("%s %.1f -> %.1f", name, b, f))
	}
	note("where RSS is (medians, baseline -> final): %s", strings.Join(parts, ", "))
	note("viewers: %d sessions, %d with video; motion events: %.0f started (agent), %.0f received (broker); credential rotations: %d",
		len(r.Viewers), withVideo, agentEvents, brokerEvents, rotations)
	note("segments on disk: median %.0f at the baseline, %.0f at the end; spool: median %.0f fragments at the baseline, %.0f at the end; KVS fragments persisted: %.0f",
		median(window(r.Samples, col("segments"), bFrom, bTo)), median(window(r.Samples, col("segments"), fFrom, end)), sb, sf,
		last(r.Samples, col("kvs_fragments")))
	v.Pass = len(v.Failures) == 0
	return v
}

// longestGap is the longest stretch of [from, to] without one of the times in at.
func longestGap(at []time.Duration, from, to time.Duration) time.Duration {
	gap, prev := time.Duration(0), from
	for _, t := range at {
		if t < from {
			continue
		}
		gap = max(gap, t-prev)
		prev = t
	}
	return max(gap, to-prev)
}

func rnd(d time.Duration) string { return d.Round(time.Second).String() }

// String is the verdict as written to verdict.txt.
func (v Verdict) String() string {
	var b strings.Builder
	if v.Pass {
		b.WriteString("PASS\n")
	} else {
		b.WriteString("FAIL\n")
	}
	for _, f := range v.Failures {
		b.WriteString("  FAIL: " + f + "\n")
	}
	b.WriteString("growth (median of the final window against the baseline window after the warm-up):\n")
	for _, g := range v.Growth {
		mark := "ok"
		if !g.OK {
			mark = "TOO MUCH"
		}
		fmt.Fprintf(&b, "  %-10s %9.1f -> %9.1f  %+6.1f %%  %s\n", g.Metric, g.Baseline, g.Final, 100*g.Fraction, mark)
	}
	for _, n := range v.Notes {
		b.WriteString("  " + n + "\n")
	}
	return b.String()
}
