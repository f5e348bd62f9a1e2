// Command benchmd runs every benchmark and end-to-end measurement of edgecam and writes
// BENCHMARKS.md: the machine, the date, the load average, and for every figure the median
// of its runs and the exact command that measured it. make bench runs it from the
// repository's root; BENCH_COUNT, BENCH_E2E_COUNT, BENCH_LOAD_COUNT, BENCH_LOAD_WINDOW and
// BENCH_QUICK=1 (short runs, to try it) tune it. The layout is fixed by the job list, so a
// second run changes only the figures (and the header's date and load).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchmd:", err)
		os.Exit(1)
	}
}

func run() error {
	var s settings
	out := flag.String("out", "BENCHMARKS.md", "file to write")
	logs := flag.String("logs", "out/bench", "folder for each command's full output")
	flag.IntVar(&s.Count, "count", envInt("BENCH_COUNT", 5), "runs of each micro-benchmark (BENCH_COUNT)")
	flag.IntVar(&s.E2ECount, "e2e-count", envInt("BENCH_E2E_COUNT", 3), "runs of each end-to-end benchmark (BENCH_E2E_COUNT)")
	flag.IntVar(&s.LoadCount, "load-count", envInt("BENCH_LOAD_COUNT", 1), "runs of the agent CPU/RSS matrix, 24 agents each (BENCH_LOAD_COUNT)")
	flag.StringVar(&s.Window, "load-window", os.Getenv("BENCH_LOAD_WINDOW"), "the CPU/RSS measuring window (BENCH_LOAD_WINDOW; empty: 30s, 5s with -quick)")
	flag.BoolVar(&s.Quick, "quick", os.Getenv("BENCH_QUICK") == "1", "short runs, to try the generator (BENCH_QUICK=1)")
	flag.StringVar(&s.Suite, "suite", "testdata/clips", "the clip suite for gated against continuous bytes")
	flag.Parse()
	if s.Quick {
		s.Count, s.E2ECount, s.LoadCount = 1, 1, 1
	}
	if s.Window == "" {
		s.Window = map[bool]string{false: "30s", true: "5s"}[s.Quick]
	}
	for name, n := range map[string]int{"BENCH_COUNT (-count)": s.Count, "BENCH_E2E_COUNT (-e2e-count)": s.E2ECount, "BENCH_LOAD_COUNT (-load-count)": s.LoadCount} {
		if n < 1 {
			return fmt.Errorf("%s is %d: give at least 1 run", name, n)
		}
	}
	if d, err := time.ParseDuration(s.Window); err != nil || d < time.Second {
		return fmt.Errorf("BENCH_LOAD_WINDOW %q: give a duration of at least 1s, such as 30s", s.Window)
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run it from the repository's root (make bench does)")
	}
	clips, err := listClips(s.Suite)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*logs, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	began := time.Now()
	m := describeMachine(ctx)
	m.Date = began.UTC().Format("2006-01-02 15:04")
	m.LoadStart = loadAverage()
	m.Mode = fmt.Sprintf("BENCH_COUNT=%d BENCH_E2E_COUNT=%d BENCH_LOAD_COUNT=%d BENCH_LOAD_WINDOW=%s", s.Count, s.E2ECount, s.LoadCount, s.Window)
	if s.Quick {
		m.Mode += " BENCH_QUICK=1 (short runs: figures for trying the generator, not for quoting)"
	}
	js := jobs(s, clips)
	outs := map[string]outcome{}
	failed := 0
	for i, j := range js {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "[%d/%d] %s\n", i+1, len(js), j.Command())
		t0 := time.Now()
		o := runJob(ctx, j, filepath.Join(*logs, j.ID+".log"))
		if o.Err != "" {
			failed++
			fmt.Fprintf(os.Stderr, "    FAILED after %s: %s (full output in %s)\n", time.Since(t0).Round(time.Second), o.Err, filepath.Join(*logs, j.ID+".log"))
		} else {
			fmt.Fprintf(os.Stderr, "    done in %s\n", time.Since(t0).Round(time.Second))
		}
		outs[j.ID] = o
	}
	m.LoadEnd = loadAverage()
	m.Duration = time.Since(began).Round(time.Minute).String()
	var buf bytes.Buffer
	if err := render(&buf, m, js, outs); err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", *out)
	if failed > 0 {
		return fmt.Errorf("%d of %d commands failed: their rows say so; see %s", failed, len(js), *logs)
	}
	return nil
}

// runJob runs one job's command and reads its figures; the full output goes to logPath.
func runJob(ctx context.Context, j job, logPath string) outcome {
	cmd := exec.CommandContext(ctx, j.Args[0], j.Args[1:]...)
	cmd.Env = append(os.Environ(), j.Env...)
	var stdout bytes.Buffer
	logf, err := os.Create(logPath)
	if err != nil {
		return outcome{Err: err.Error()}
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s\n", j.Command())
	// The log follows the run as it goes (tail -f out/bench/ID.log).
	if j.Suite {
		cmd.Stdout, cmd.Stderr = &stdout, logf // the JSON alone on stdout, into the log at the end
	} else {
		w := io.MultiWriter(&stdout, logf)
		cmd.Stdout, cmd.Stderr = w, w
	}
	runErr := cmd.Run()
	if j.Suite {
		_, _ = logf.Write(stdout.Bytes())
	}
	o := outcome{Notes: map[string]string{}}
	if j.Suite {
		if runErr == nil {
			o.Results, err = parseSuite(stdout.Bytes())
			if err != nil {
				o.Err = err.Error()
			}
		}
	} else {
		o.Results, o.Notes, err = parseBench(bytes.NewReader(stdout.Bytes()), runtime.GOMAXPROCS(0))
		if err != nil {
			o.Err = err.Error()
		}
	}
	if runErr != nil {
		o.Err = runErr.Error()
	}
	return o
}

// listClips lists the suite's clips (base names, in order), as edgecam motion eval --suite
// reads them, so that the ingest table has its rows even when the command fails.
func listClips(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("the clip suite %s: %w (make testdata makes it)", dir, err)
	}
	var out []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".mp4" && ext != ".mkv" && ext != ".ts") || strings.Contains(e.Name(), ".tmp") {
			continue
		}
		out = append(out, clipName(e.Name()))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the clip suite %s holds no clip: run make testdata", dir)
	}
	return out, nil
}

// describeMachine reads the machine's description; an unknown part stays empty.
func describeMachine(ctx context.Context) machine {
	var m machine
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	m.Cores = fmt.Sprintf("%d (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					m.Memory = fmt.Sprintf("%.1f GiB", kb/1024/1024)
				}
			}
		}
	}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	m.Go = output(ctx, "go", "env", "GOVERSION")
	if v := output(ctx, "gst-launch-1.0", "--version"); v != "" {
		for _, line := range strings.Split(v, "\n") {
			if rest, ok := strings.CutPrefix(line, "GStreamer "); ok {
				m.GStreamer = strings.TrimSpace(rest)
			}
		}
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if v := output(ctx, name, "--version"); v != "" {
			m.Chromium = v
			break
		}
	}
	m.Commit = output(ctx, "git", "rev-parse", "--short", "HEAD")
	if m.Commit != "" && output(ctx, "git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md") != "" {
		m.Commit += " with uncommitted changes"
	}
	return m
}

// output is a command's trimmed standard output, or "" when it fails.
func output(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], ", ")
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchmd: %s=%q is not a whole number: give a count such as %d\n", name, v, def)
			os.Exit(2)
		}
		return n
	}
	return def
}
