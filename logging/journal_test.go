package logging

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// journalStream returns both ends of a stream socket, as systemd hands the service one
// connected to journald, and the JOURNAL_STREAM value that names the service's end.
func journalStream(t *testing.T) (service, journal *os.File, env string) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	service, journal = os.NewFile(uintptr(fds[0]), "service"), os.NewFile(uintptr(fds[1]), "journal")
	t.Cleanup(func() { service.Close(); journal.Close() })
	var st syscall.Stat_t
	require.NoError(t, syscall.Fstat(fds[0], &st))
	return service, journal, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestUnderJournal(t *testing.T) {
	service, journal, env := journalStream(t)
	other, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer other.Close()
	tests := []struct {
		name string
		env  string
		f    *os.File
		want bool
	}{
		{"the stream systemd connected", env, service, true},
		{"no JOURNAL_STREAM", "", service, false},
		{"output redirected to a file", env, other, false},
		{"the other end", env, journal, false},
		{"garbage", "journal", service, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, matchesJournalStream(tt.env, tt.f))
		})
	}
	t.Setenv("JOURNAL_STREAM", env)
	require.True(t, UnderJournal(service))
}

// TestJournalPriorities: under journald every line, in every format, starts with the
// record's priority, so journalctl -p err selects exactly the errors.
func TestJournalPriorities(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			service, journal, env := journalStream(t)
			t.Setenv("JOURNAL_STREAM", env)
			log, err := New(Options{Level: "debug", Format: format, Output: service})
			require.NoError(t, err)
			log.Debug("debug line")
			log.Info("info line")
			log.Warn("warn line")
			log.Error("error line", zap.Error(errors.New("disk full")))
			// A record spread over lines (a stack trace) keeps its priority on each.
			log.WithOptions(zap.AddStacktrace(zapcore.ErrorLevel)).Error("error with stack")
			require.NoError(t, log.Sync())
			require.NoError(t, service.Close())

			var lines []string
			sc := bufio.NewScanner(journal)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			if format == "json" {
				require.Len(t, lines, 5, "JSON keeps a stack trace on its record's line")
			} else {
				require.Greater(t, len(lines), 5, "the console encoder puts a stack trace on lines of its own")
			}
			want := map[string]string{"debug line": "<7>", "info line": "<6>", "warn line": "<4>", "error line": "<3>", "error with stack": "<3>"}
			errs := 0
			for _, l := range lines {
				require.Regexp(t, `^<[0-7]>`, l, "every line carries a priority")
				for msg, prefix := range want {
					if strings.Contains(l, msg) {
						require.True(t, strings.HasPrefix(l, prefix), "%q should start with %s", l, prefix)
					}
				}
				if strings.HasPrefix(l, "<3>") {
					errs++
				}
				if strings.Contains(l, "disk full") {
					require.True(t, strings.HasPrefix(l, "<3>"))
				}
			}
			if format == "console" {
				require.Greater(t, errs, 2, "the stack trace's lines are errors too")
			} else {
				require.Equal(t, 2, errs)
			}
			for _, l := range lines {
				if strings.HasPrefix(l, "<3>") {
					require.NotContains(t, l, "info line")
					require.NotContains(t, l, "warn line")
				}
			}
		})
	}
}

func TestNoPrefixOutsideJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close()
	log, err := New(Options{Level: "info", Format: "json", Output: f})
	require.NoError(t, err)
	log.Error("plain")
	require.NoError(t, log.Sync())
	data, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(data), "{"), "%s", data)
}

func TestLevelVarChangesLive(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close()
	lv := zap.NewAtomicLevel()
	log, err := New(Options{Level: "info", Format: "json", Output: f, LevelVar: &lv})
	require.NoError(t, err)
	log.Debug("hidden")
	lv.SetLevel(zapcore.DebugLevel)
	log.Debug("shown")
	require.NoError(t, log.Sync())
	data, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.NotContains(t, string(data), "hidden")
	require.Contains(t, string(data), "shown")
}

func TestPriority(t *testing.T) {
	tests := []struct {
		level zapcore.Level
		want  int
	}{
		{zapcore.DebugLevel, 7}, {zapcore.InfoLevel, 6}, {zapcore.WarnLevel, 4}, {zapcore.ErrorLevel, 3},
		{zapcore.DPanicLevel, 2}, {zapcore.PanicLevel, 2}, {zapcore.FatalLevel, 2},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Priority(tt.level), tt.level.String())
	}
}

// clock is a hand-driven time source for the rate limiter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestRateLimitRepeatedWarnings(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	core, logs := newObserved()
	log := zap.New(NewRateLimitCore(core, RateLimit{Burst: 3, Interval: time.Minute, Now: c.now}))
	gst := log.Named("gst")
	warn := func(element string) {
		gst.Warn("GStreamer warning", zap.String("element", element), zap.String("message", "Can't record audio fast enough"), zap.Int("n", 1))
	}
	for range 100 {
		warn("alsasrc0")
	}
	warn("v4l2src0") // another element: another warning
	log.Info("info is not limited")
	for range 10 {
		log.Error("errors are not limited")
	}
	require.Len(t, logs.filter("GStreamer warning", "alsasrc0"), 3, "burst of 3")
	require.Len(t, logs.filter("GStreamer warning", "v4l2src0"), 1)
	require.Len(t, logs.filter("errors are not limited", ""), 10)
	last := logs.filter("GStreamer warning", "alsasrc0")[2]
	require.Contains(t, last.fields, "rate_limit", "the last one let through says that repeats are held back")

	c.t = c.t.Add(30 * time.Second)
	warn("alsasrc0")
	require.Len(t, logs.filter("GStreamer warning", "alsasrc0"), 3, "still inside the window")

	c.t = c.t.Add(31 * time.Second)
	warn("alsasrc0")
	got := logs.filter("GStreamer warning", "alsasrc0")
	require.Len(t, got, 4, "a new window")
	require.Equal(t, int64(98), got[3].fields["suppressed"], "97 of the first window and 1 held back later")
}

func TestRateLimitBoundsMemory(t *testing.T) {
	c := &clock{t: time.Now()}
	core, _ := newObserved()
	rl := NewRateLimitCore(core, RateLimit{Now: c.now}).(*rateLimitCore)
	log := zap.New(rl)
	for i := range 3 * maxKeys {
		log.Warn("distinct", zap.String("i", fmt.Sprint(i)))
	}
	require.LessOrEqual(t, len(rl.state.keys), maxKeys)
}

// observed filters what an observer core recorded.
type observed struct{ logs *observer.ObservedLogs }

type observedRecord struct {
	msg    string
	fields map[string]any
}

func newObserved() (zapcore.Core, observed) {
	core, logs := observer.New(zapcore.DebugLevel)
	return core, observed{logs: logs}
}

func (o observed) filter(msg, element string) []observedRecord {
	var out []observedRecord
	for _, e := range o.logs.FilterMessage(msg).All() {
		r := observedRecord{msg: e.Message, fields: e.ContextMap()}
		if element == "" || r.fields["element"] == element {
			out = append(out, r)
		}
	}
	return out
}
