package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// What go test -bench prints, with a subprocess's log between a name and its result, a
// custom metric, a skipped benchmark and a benchmark whose name ends in a number.
const sampleOutput = `goos: linux
goarch: amd64
pkg: github.com/edgecam/edgecam/cmd/edgecam
cpu: AMD EPYC
BenchmarkHubPublish/subscribers=0-2         	 6000000	       177.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkHubPublish/subscribers=10-2        	  500000	      2600 ns/op	      12 B/op	       0 allocs/op
BenchmarkHubPublish/subscribers=10-2        	  500000	      2400 ns/op	      10 B/op	       0 allocs/op
BenchmarkHubPublish/subscribers=10-2        	  500000	      3100 ns/op	      10 B/op	       1 allocs/op
BenchmarkLiveViewLoad/recording=native/analysis=off/viewers=1-2         	time=2026-12-02T04:00:00Z level=WARN msg="a log line"
another log line
       1	      1383 ns/op	         0.5060 cpu-s/30s	        59.97 rss-MB
BenchmarkLiveViewLoad/recording=kvssink/analysis=off/viewers=0-2
    load_bench_test.go:60: kvssink is not built
--- SKIP: BenchmarkLiveViewLoad/recording=kvssink/analysis=off/viewers=0-2
BenchmarkNALUnits-2   	  500000	      2500 ns/op	24000.00 MB/s	       0 B/op	       0 allocs/op
PASS
ok  	github.com/edgecam/edgecam/cmd/edgecam	72.304s
`

func TestParseBench(t *testing.T) {
	res, notes, err := parseBench(strings.NewReader(sampleOutput), 2)
	require.NoError(t, err)
	tests := []struct {
		bench, metric string
		want          []float64
	}{
		{"BenchmarkHubPublish/subscribers=0", "ns/op", []float64{177}},
		{"BenchmarkHubPublish/subscribers=10", "ns/op", []float64{2600, 2400, 3100}},
		{"BenchmarkHubPublish/subscribers=10", "allocs/op", []float64{0, 0, 1}},
		{"BenchmarkLiveViewLoad/recording=native/analysis=off/viewers=1", "cpu-s/30s", []float64{0.506}},
		{"BenchmarkLiveViewLoad/recording=native/analysis=off/viewers=1", "rss-MB", []float64{59.97}},
		{"BenchmarkNALUnits", "MB/s", []float64{24000}},
	}
	for _, tt := range tests {
		t.Run(tt.bench+" "+tt.metric, func(t *testing.T) {
			require.Equal(t, tt.want, res[tt.bench][tt.metric])
		})
	}
	require.Equal(t, "skipped", notes["BenchmarkLiveViewLoad/recording=kvssink/analysis=off/viewers=0"])
	require.NotContains(t, res, "BenchmarkLiveViewLoad/recording=kvssink/analysis=off/viewers=0")
}

func TestParseBenchOneProc(t *testing.T) {
	// GOMAXPROCS 1: no suffix, and a name's own trailing number stays.
	res, _, err := parseBench(strings.NewReader("BenchmarkX/viewers=10 \t 1\t 5 ns/op\n"), 1)
	require.NoError(t, err)
	require.Equal(t, []float64{5}, res["BenchmarkX/viewers=10"]["ns/op"])
}

func TestParseSuite(t *testing.T) {
	res, err := parseSuite([]byte(`go: downloading nothing
[{"video": "testdata/clips/a.mp4", "continuousBytes": 4000000, "gatedBytes": 1000000},
 {"video": "testdata/clips/b.mp4", "continuousBytes": 6000000, "gatedBytes": 0}]`))
	require.NoError(t, err)
	require.Equal(t, []float64{25}, res["a"]["kept-%"])
	require.Equal(t, []float64{4}, res["a"]["continuous-MB"])
	require.Equal(t, []float64{10}, res[suiteTotal]["continuous-MB"])
	require.Equal(t, []float64{10}, res[suiteTotal]["kept-%"])
	_, err = parseSuite([]byte("panic: no clips"))
	require.ErrorContains(t, err, "no JSON list")
}

func TestFigure(t *testing.T) {
	tests := []struct {
		vs    []float64
		scale float64
		want  string
	}{
		{[]float64{2600, 2400, 3100}, 0, "2600 (2400–3100)"},
		{[]float64{1, 2, 3, 4}, 0, "2.50 (1–4)"},
		{[]float64{0, 0, 0}, 0, "0"},
		{[]float64{51254339}, 1e-6, "51.3"},
		{[]float64{0.00123}, 0, "0.001"},
		{[]float64{0.000123}, 0, "0.000123"},
		{[]float64{0.6}, 0, "0.600"},
		{[]float64{1, 1, 3}, 0, "1 (1–3)"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, figure(tt.vs, tt.scale))
	}
}

// Two renders with other figures (another machine, another date, other values, a failed
// command) differ only in the header's values and the figure cells: the same lines, the same
// labels and commands.
func TestRenderChangesOnlyFigures(t *testing.T) {
	s := settings{Count: 5, E2ECount: 3, LoadCount: 1, Window: "30s", Suite: "testdata/clips"}
	js := jobs(s, []string{"ball", "outdoor-rain"})
	fill := func(base float64, failLoad bool) map[string]outcome {
		outs := map[string]outcome{}
		for k, j := range js {
			o := outcome{Results: results{}, Notes: map[string]string{}}
			for i, r := range j.Rows {
				for c, col := range j.Columns {
					o.Results.add(r.Bench, col.Metric, base*float64(1+i+c+k))
					o.Results.add(r.Bench, col.Metric, base*float64(2+i+c+k))
				}
			}
			if failLoad && j.ID == "load" {
				o = outcome{Err: "exit status 1"}
			}
			outs[j.ID] = o
		}
		return outs
	}
	var a, b bytes.Buffer
	require.NoError(t, render(&a, machine{CPU: "AMD EPYC", Cores: "2", Date: "2026-12-02 04:00", LoadStart: "1.0, 2.0, 3.0"}, js, fill(1, false)))
	require.NoError(t, render(&b, machine{CPU: "Intel Xeon", Cores: "4", Date: "2026-12-03 05:00", LoadStart: "20.1, 18.0, 15.2"}, js, fill(3.7, true)))
	la, lb := strings.Split(a.String(), "\n"), strings.Split(b.String(), "\n")
	require.Len(t, lb, len(la), "the same number of lines")
	differing := 0
	for i := range la {
		if la[i] == lb[i] {
			continue
		}
		differing++
		ca, cb := strings.Split(la[i], " | "), strings.Split(lb[i], " | ")
		require.Len(t, cb, len(ca), "line %d: the same cells", i+1)
		require.True(t, strings.HasPrefix(la[i], "| "), "line %d differs but is not a table row: %q", i+1, la[i])
		require.Equal(t, ca[0], cb[0], "line %d: the same label", i+1)
		if len(ca) > 2 { // a figure row, not the machine's
			require.Equal(t, ca[len(ca)-1], cb[len(cb)-1], "line %d: the same command", i+1)
			require.Contains(t, ca[len(ca)-1], "go ", "line %d: ends with its command", i+1)
		}
	}
	require.Positive(t, differing)
}

// Every figure row names its command, and every job's rows are unique.
func TestEveryFigureHasItsCommand(t *testing.T) {
	for _, quick := range []bool{false, true} {
		js := jobs(settings{Count: 5, E2ECount: 3, LoadCount: 1, Window: "30s", Quick: quick, Suite: "testdata/clips"}, []string{"ball"})
		var buf bytes.Buffer
		require.NoError(t, render(&buf, machine{}, js, map[string]outcome{}))
		inTable, rows := false, 0
		for _, line := range strings.Split(buf.String(), "\n") {
			switch {
			case strings.HasPrefix(line, "| figure |"):
				inTable = true
			case !strings.HasPrefix(line, "|"):
				inTable = false
			case inTable && !strings.HasPrefix(line, "|---"):
				rows++
				require.Regexp(t, regexp.MustCompile("\\| `(\\S+=\\S+ )*go (test|run) [^`]+` \\|$"), line)
			}
		}
		want := 0
		for _, j := range js {
			want += len(j.Rows)
			seen := map[string]bool{}
			for _, r := range j.Rows {
				require.False(t, seen[r.Bench], "%s: row %s twice", j.ID, r.Bench)
				seen[r.Bench] = true
			}
		}
		require.Equal(t, want, rows)
	}
}

func TestShellQuote(t *testing.T) {
	require.Equal(t, "'^$'", shellQuote("^$"))
	require.Equal(t, "./media/h264", shellQuote("./media/h264"))
	require.Equal(t, `'it'\''s'`, shellQuote("it's"))
	require.Equal(t, "'^BenchmarkHub(Publish|Subscribe)$'", shellQuote("^BenchmarkHub(Publish|Subscribe)$"))
}
