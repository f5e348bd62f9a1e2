package main

import (
	"fmt"
	"strings"
)

// settings are what make bench passes (BENCH_COUNT and friends).
type settings struct {
	Count     int    // -count of the micro-benchmarks
	E2ECount  int    // -count of the end-to-end benchmarks (TTFF, catch-up, provisioning)
	LoadCount int    // -count of LiveViewLoad (each run is 24 agent processes)
	Window    string // LiveViewLoad's measuring window (LOAD_BENCH_WINDOW)
	Quick     bool   // short benchtimes and windows, to try the generator
	Suite     string // the clip suite for the gated/continuous bytes
}

// column is one figure column of a section's table: a metric as the benchmark reports it.
type column struct {
	Header string
	Metric string  // unit as reported: ns/op, allocs/op, cpu-s/30s, ...
	Scale  float64 // the shown figure is the metric times this (0: 1)
}

// row is one line of a section's table: a benchmark (its full name without the -GOMAXPROCS
// suffix) and what it measures.
type row struct {
	Label string
	Bench string
}

// job is one command and the section of BENCHMARKS.md its figures fill.
type job struct {
	ID      string // names the log file: out/bench/ID.log
	Title   string
	About   string // a paragraph under the title
	Env     []string
	Args    []string // the command run (argv), from the repository's root
	Runs    int      // -count, for the text
	Columns []column
	Rows    []row
	// Suite marks the motion-suite job: its output is JSON, not benchmark lines.
	Suite bool
}

// Command is the job's command as a shell would take it.
func (j job) Command() string {
	var parts []string
	parts = append(parts, j.Env...)
	for _, a := range j.Args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// goBench is the argv of a go test benchmark run.
func goBench(bench, benchtime string, count int, timeout string, pkgs ...string) []string {
	args := []string{"go", "test", "-run", "^$", "-bench", bench, "-benchmem", "-count", fmt.Sprint(count)}
	if benchtime != "" {
		args = append(args, "-benchtime", benchtime)
	}
	if timeout != "" {
		args = append(args, "-timeout", timeout)
	}
	return append(args, pkgs...)
}

var (
	nsOp     = column{Header: "ns/op", Metric: "ns/op"}
	allocsOp = column{Header: "allocs/op", Metric: "allocs/op"}
	bytesOp  = column{Header: "B/op", Metric: "B/op"}
)

// jobs lists every benchmark and end-to-end measurement, in the order of BENCHMARKS.md. The
// rows are fixed here (not taken from the output), so that a failed or skipped benchmark
// leaves its row with a note instead of moving the others.
func jobs(s settings, clips []string) []job {
	micro := func(d string) string { // the micro-benchmarks' -benchtime
		if s.Quick {
			return "100ms"
		}
		return d
	}
	times := func(full, quick int) string {
		if s.Quick {
			return fmt.Sprintf("%dx", quick)
		}
		return fmt.Sprintf("%dx", full)
	}
	var out []job
	out = append(out, job{
		ID: "detector", Title: "Motion detector",
		About: "One 320x180 GRAY8 analysis frame through the detector (`motion.Detector.Process`): sensor noise, a moving " +
			"square and a mask; Shake: the camera shaking every frame, so that every stage runs. ns/op is ns per frame.",
		Args: goBench("^BenchmarkDetector(Shake)?$", micro(""), s.Count, "", "./motion"), Runs: s.Count,
		Columns: []column{{Header: "ns/frame", Metric: "ns/op"}, allocsOp},
		Rows: []row{
			{"detector, moving square", "BenchmarkDetector"},
			{"detector, camera shake", "BenchmarkDetectorShake"},
		},
	})
	out = append(out, job{
		ID: "hub", Title: "Hub fan-out",
		About: "`media.Hub`: one Publish of an ~8 KB access unit (2 Mbit/s at 30 fps) with subscribers that drain " +
			"concurrently; a late subscribe (copies the GOP); a subscribe with 5 s of pre-roll.",
		Args: goBench("^BenchmarkHub(Publish|Subscribe|PreRoll)$", micro(""), s.Count, "", "./media"), Runs: s.Count,
		Columns: []column{nsOp, bytesOp, allocsOp},
		Rows: []row{
			{"Publish, 0 subscribers", "BenchmarkHubPublish/subscribers=0"},
			{"Publish, 1 subscriber", "BenchmarkHubPublish/subscribers=1"},
			{"Publish, 10 subscribers", "BenchmarkHubPublish/subscribers=10"},
			{"late Subscribe (GOP copy)", "BenchmarkHubSubscribe"},
			{"Subscribe with 5 s pre-roll", "BenchmarkHubPreRoll"},
		},
	})
	out = append(out, job{
		ID: "h264", Title: "H.264 parsing",
		About: "`media/h264` on a 60 KB IDR access unit of the 720p clip.",
		Args:  goBench(".", micro(""), s.Count, "", "./media/h264"), Runs: s.Count,
		Columns: []column{nsOp, {Header: "MB/s", Metric: "MB/s"}, allocsOp},
		Rows: []row{
			{"IsKeyframe", "BenchmarkIsKeyframe"},
			{"NALUnits", "BenchmarkNALUnits"},
			{"ParseSPS", "BenchmarkParseSPS"},
			{"AnnexBToAVCC", "BenchmarkAnnexBToAVCC"},
		},
	})
	out = append(out, job{
		ID: "kvsupload", Title: "KVS native uploader",
		About: "`media/kvsupload` on a 720p30 ~2.2 Mbit/s stream, 2 s GOP: one op is one fragment (one GOP), 20 a run. " +
			"Upload: spool append, PutMedia to a local test server that parses and acknowledges, PERSISTED, removal; " +
			"its CPU includes the server's.",
		// Each round encodes its clip with ffmpeg first: a fixed count of fragments keeps the
		// rounds few.
		Args: goBench(".", times(20, 5), s.E2ECount, "", "./media/kvsupload"), Runs: s.E2ECount,
		Columns: []column{{Header: "ms/fragment", Metric: "ns/op", Scale: 1e-6}, allocsOp,
			{Header: "bytes/fragment", Metric: "bytes/fragment"}, {Header: "fsyncs/fragment", Metric: "fsyncs/fragment"},
			{Header: "MB written/hour", Metric: "MB-written/hour"}, {Header: "CPU ms/fragment", Metric: "cpu-ms/fragment(incl.server)"}},
		Rows: []row{
			{"fragmenter (Matroska cluster of a GOP)", "BenchmarkFragmenter720p"},
			{"spool append + PERSISTED", "BenchmarkSpoolAppend720p"},
			{"whole upload path", "BenchmarkUpload720p"},
		},
	})
	out = append(out, job{
		ID: "packetize", Title: "RTP packetization",
		About: "One 60 KB IDR access unit into RTP packets: edgecam's packetizer against pion's.",
		Args:  goBench("^BenchmarkPacketize$", micro(""), s.Count, "", "./media/webrtc"), Runs: s.Count,
		Columns: []column{nsOp, {Header: "MB/s", Metric: "MB/s"}, allocsOp},
		Rows: []row{
			{"edgecam", "BenchmarkPacketize/edgecam"},
			{"pion", "BenchmarkPacketize/pion"},
		},
	})
	out = append(out, job{
		ID: "localcloud", Title: "localcloud's KVS read side",
		About: "localcloud's Matroska demuxer (a PutMedia body) and its fMP4 fragmenter (GetClip, HLS).",
		Args:  goBench(".", micro(""), s.Count, "", "./localcloud/mkv", "./localcloud/fmp4"), Runs: s.Count,
		Columns: []column{nsOp, {Header: "MB/s", Metric: "MB/s"}, allocsOp},
		Rows: []row{
			{"Matroska demuxer", "BenchmarkDemuxer"},
			{"fMP4 fragment", "BenchmarkFragment"},
		},
	})
	out = append(out, job{
		ID: "metrics", Title: "Prometheus metrics",
		About: "One scrape of the agent's registry (every edgecam_* metric).",
		Args:  goBench("^BenchmarkMetricsGather$", micro(""), s.Count, "", "./agent"), Runs: s.Count,
		Columns: []column{{Header: "µs/scrape", Metric: "ns/op", Scale: 1e-3}, bytesOp, allocsOp},
		Rows:    []row{{"Gather", "BenchmarkMetricsGather"}},
	})
	out = append(out, job{
		ID: "provisioning", Title: "Provisioning wall time",
		About: "Fleet provisioning by claim against localcloud's broker on loopback, for a device that never " +
			"provisioned: the claim's TLS MQTT connection, the key pair, the certificate, RegisterThing, the identity " +
			"written to a fresh store (10 devices a run).",
		Args: goBench("^BenchmarkFleetProvisioning$", times(10, 3), s.E2ECount, "", "./provisioning"), Runs: s.E2ECount,
		Columns: []column{{Header: "ms/provision", Metric: "ms/provision"}},
		Rows: []row{
			{"CSR, ECDSA P-256 key made on the device (default)", "BenchmarkFleetProvisioning/csr-ecdsa-p256"},
			{"CSR, RSA 2048 key made on the device", "BenchmarkFleetProvisioning/csr-rsa-2048"},
			{"CreateKeysAndCertificate (the cloud makes the key)", "BenchmarkFleetProvisioning/create-keys-and-certificate"},
		},
	})
	out = append(out, job{
		ID: "ttff-go", Title: "Time to first frame: Go viewer",
		About: "The agent (720p30 2 Mbit/s test source, 2 s GOP) with live view through localcloud's signaling on " +
			"loopback; 20 pion viewers a run, each joining at a random moment of the GOP: from the SDP offer leaving the " +
			"viewer to the first complete keyframe arriving.",
		Args: goBench("^BenchmarkTimeToFirstFrame$", times(20, 5), s.E2ECount, "20m", "./agent"), Runs: s.E2ECount,
		Columns: []column{{Header: "p50 ms", Metric: "p50-ms"}, {Header: "p95 ms", Metric: "p95-ms"}, {Header: "max ms", Metric: "max-ms"}},
		Rows:    []row{{"offer → first keyframe", "BenchmarkTimeToFirstFrame"}},
	})
	out = append(out, job{
		ID: "ttff-chromium", Title: "Time to first frame: headless Chromium",
		About: "The same agent, viewed by headless Chromium on localcloud's viewer page (a new tab per viewer, 10 a run, " +
			"each at a random moment of the GOP): from the page's SDP offer, and from the navigation's start (page load, " +
			"SigV4, ICE, DTLS), to Chromium's first decoded frame (its WebRTC stats, polled every 5 ms).",
		Args: goBench("^BenchmarkTimeToFirstFrameChromium$", times(10, 3), s.E2ECount, "20m", "./agent"), Runs: s.E2ECount,
		Columns: []column{{Header: "offer → frame p50 ms", Metric: "offer-p50-ms"}, {Header: "offer → frame p95 ms", Metric: "offer-p95-ms"},
			{Header: "page → frame p50 ms", Metric: "page-p50-ms"}, {Header: "page → frame p95 ms", Metric: "page-p95-ms"}},
		Rows: []row{{"Chromium, viewer page", "BenchmarkTimeToFirstFrameChromium"}},
	})
	out = append(out, job{
		ID: "catchup", Title: "WebRTC catch-up on join",
		About: "20 viewers a run join a 720p30 2 Mbit/s clip (2 s GOP) on loopback while one watches: time to first " +
			"frame and what the joins broke (access units that did not decode, lost packets), at the joiners and at the watcher.",
		Args: goBench("^BenchmarkCatchUp$", times(20, 5), s.E2ECount, "20m", "./media/webrtc"), Runs: s.E2ECount,
		Columns: []column{{Header: "p50 ms", Metric: "ttff-p50-ms"}, {Header: "p95 ms", Metric: "ttff-p95-ms"},
			{Header: "joiners with broken AUs", Metric: "joiners-with-broken-AUs"}, {Header: "joiner lost pkts", Metric: "joiner-lost-pkts"},
			{Header: "watcher broken AUs", Metric: "watcher-broken-AUs"}},
		Rows: []row{{"20 joins, loopback", "BenchmarkCatchUp"}},
	})
	window := s.Window
	loadRows := []row{}
	for _, rec := range []struct{ key, text string }{{"off", "recording off"}, {"kvssink", "recording via kvssink"}, {"native", "recording via native uploader"}} {
		for _, an := range []string{"off", "on"} {
			for _, v := range []int{0, 1, 5, 10} {
				loadRows = append(loadRows, row{
					Label: fmt.Sprintf("%s, analysis %s, %d viewer%s", rec.text, an, v, map[bool]string{true: "", false: "s"}[v == 1]),
					Bench: fmt.Sprintf("BenchmarkLiveViewLoad/recording=%s/analysis=%s/viewers=%d", rec.key, an, v),
				})
			}
		}
	}
	out = append(out, job{
		ID: "load", Title: "Agent CPU and RSS",
		About: "The agent binary (`edgecam run`) on a 720p30 2 Mbit/s RTSP stream passed through (no re-encode), with " +
			"0/1/5/10 Go viewers through localcloud's signaling, motion analysis off and on, recording off or continuous " +
			"into localcloud's KVS through kvssink or the native uploader (the same stream): the agent process's CPU " +
			"(user + system, per 30 s) and peak RSS over a " + window + " window once every viewer has its first keyframe " +
			"and KVS has persisted a fragment. 30 CPU-s per 30 s is one core.",
		Env:  []string{"LOAD_BENCH_WINDOW=" + window},
		Args: goBench("^BenchmarkLiveViewLoad$", "1x", s.LoadCount, "120m", "./cmd/edgecam"), Runs: s.LoadCount,
		Columns: []column{{Header: "CPU-s per 30 s", Metric: "cpu-s/30s"}, {Header: "peak RSS MB", Metric: "rss-MB"}},
		Rows:    loadRows,
	})
	suiteRows := []row{}
	for _, c := range clips {
		suiteRows = append(suiteRows, row{Label: c, Bench: c})
	}
	suiteRows = append(suiteRows, row{Label: "**all clips**", Bench: suiteTotal})
	out = append(out, job{
		ID: "ingest", Title: "Motion-gated against continuous ingest",
		About: "Every clip of the suite (`" + s.Suite + "`, `make testdata`) through the agent's analysis pipeline, " +
			"detector and gate with the default configuration (pre-roll, post-roll, event gap): the H.264 bytes a " +
			"continuous recording sends to KVS against a motion-gated one (fragments from the keyframe before each " +
			"event's pre-roll to its end). The figures follow from the clips, so they change only with the clips, " +
			"the detector or the defaults.",
		Args: []string{"go", "run", "./cmd/edgecam", "motion", "eval", "--suite", s.Suite, "--json"}, Runs: 1, Suite: true,
		Columns: []column{{Header: "continuous MB", Metric: "continuous-MB"}, {Header: "gated MB", Metric: "gated-MB"},
			{Header: "gated/continuous %", Metric: "kept-%"}},
		Rows: suiteRows,
	})
	return out
}

// suiteTotal names the suite job's total row.
const suiteTotal = "(all)"
