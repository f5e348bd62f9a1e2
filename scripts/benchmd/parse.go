package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// results holds every value a benchmark reported, per metric, one per run (-count).
type results map[string]map[string][]float64

func (r results) add(bench, metric string, v float64) {
	if r[bench] == nil {
		r[bench] = map[string][]float64{}
	}
	r[bench][metric] = append(r[bench][metric], v)
}

var (
	// A benchmark's name at the start of a line (go test prints it before running it).
	benchName = regexp.MustCompile(`^(Benchmark\S+)`)
	// Its result: iterations, then "value unit" pairs, ns/op first. Other output (a
	// subprocess's log) may stand between the name and the result, or before the result on
	// its line.
	benchResult = regexp.MustCompile(`(?:^|\s)(\d+)\t\s*([-+0-9.eE]+ ns/op(?:\t\s*[-+0-9.eE]+ \S+)*)\s*$`)
	skipLine    = regexp.MustCompile(`--- SKIP: (Benchmark\S+)`)
	failLine    = regexp.MustCompile(`--- FAIL: (Benchmark\S+)`)
)

// parseBench reads go test -bench output. procs is GOMAXPROCS of the run: go test appends
// "-procs" to every name when it is not 1. It returns the figures and the benchmarks that
// were skipped or failed.
func parseBench(r io.Reader, procs int) (results, map[string]string, error) {
	suffix := ""
	if procs != 1 {
		suffix = "-" + strconv.Itoa(procs)
	}
	trim := func(name string) string { return strings.TrimSuffix(name, suffix) }
	out, notes := results{}, map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	pending := ""
	for sc.Scan() {
		line := sc.Text()
		if m := skipLine.FindStringSubmatch(line); m != nil {
			notes[trim(m[1])] = "skipped"
			continue
		}
		if m := failLine.FindStringSubmatch(line); m != nil {
			notes[trim(m[1])] = "failed"
			continue
		}
		if m := benchName.FindStringSubmatch(line); m != nil {
			pending = trim(m[1])
		}
		m := benchResult.FindStringSubmatch(line)
		if m == nil || pending == "" {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("benchmark %s: figure %q: %w", pending, f[i], err)
			}
			out.add(pending, f[i+1], v)
		}
		pending = ""
	}
	return out, notes, sc.Err()
}

// suiteClip is the part of edgecam motion eval --json that the ingest section uses.
type suiteClip struct {
	Video           string `json:"video"`
	ContinuousBytes int64  `json:"continuousBytes"`
	GatedBytes      int64  `json:"gatedBytes"`
}

// parseSuite reads edgecam motion eval --suite --json: per clip (by base name) and for all
// clips together, the continuous and gated megabytes and their ratio.
func parseSuite(data []byte) (results, error) {
	// go run may print build lines before the JSON: it starts at the first '['.
	i := strings.IndexByte(string(data), '[')
	if i < 0 {
		return nil, fmt.Errorf("no JSON list in the motion eval output")
	}
	var clips []suiteClip
	if err := json.NewDecoder(strings.NewReader(string(data[i:]))).Decode(&clips); err != nil {
		return nil, fmt.Errorf("reading the motion eval JSON: %w", err)
	}
	out := results{}
	var cont, gated int64
	put := func(name string, c, g int64) {
		out.add(name, "continuous-MB", float64(c)/1e6)
		out.add(name, "gated-MB", float64(g)/1e6)
		out.add(name, "kept-%", 100*float64(g)/float64(max(c, 1)))
	}
	for _, c := range clips {
		put(clipName(c.Video), c.ContinuousBytes, c.GatedBytes)
		cont, gated = cont+c.ContinuousBytes, gated+c.GatedBytes
	}
	put(suiteTotal, cont, gated)
	return out, nil
}

func clipName(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// figure is what a table cell shows for a metric's runs: the median, and the range when the
// runs differ.
func figure(vs []float64, scale float64) string {
	if len(vs) == 0 {
		return ""
	}
	if scale == 0 {
		scale = 1
	}
	s := append([]float64(nil), vs...)
	for i := range s {
		s[i] *= scale
	}
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	out := number(med)
	if lo, hi := number(s[0]), number(s[len(s)-1]); lo != hi {
		out += " (" + lo + "–" + hi + ")"
	}
	return out
}

// number prints a figure with about three significant digits.
func number(v float64) string {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case v == math.Trunc(v) && a < 1e15: // counts (allocs, fsyncs) and whole figures
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a >= 0.001:
		return strconv.FormatFloat(v, 'f', 3, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
