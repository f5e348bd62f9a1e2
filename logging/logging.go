// Package logging builds edgecam's zap logger: a coloured console encoder on a terminal,
// JSON lines otherwise (journald, files, pipes). Under systemd every line starts with its
// sd-daemon priority prefix, so that journald files errors as errors, and repeated warnings
// (a GStreamer element saying the same thing every frame) are rate-limited.
package logging

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options choose the level and encoding.
type Options struct {
	Level  string // debug, info, warn, error
	Format string // auto, console, json
	// Output is where records go; nil means standard error.
	Output *os.File
	// Journal starts every line with its priority ("<3>" for an error), as journald
	// expects. It is on anyway when Output is the journal stream (UnderJournal).
	Journal bool
	// LevelVar, when set, is the logger's level: set to Level here, and changeable later
	// (a configuration reload) without building a new logger.
	LevelVar *zap.AtomicLevel
	// RateLimit bounds repeated warnings (zero value: 5 a minute for each warning).
	RateLimit RateLimit
}

// New returns a logger for the options. In auto format, a terminal gets the console encoder
// and anything else gets JSON.
func New(o Options) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(o.Level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", o.Level)
	}
	out := o.Output
	if out == nil {
		out = os.Stderr
	}
	format := o.Format
	if format == "" || format == "auto" {
		format = "json"
		if IsTerminal(out) {
			format = "console"
		}
	}

	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch format {
	case "console":
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, fmt.Errorf("log format %q: use auto, console or json", o.Format)
	}
	if o.Journal || UnderJournal(out) {
		enc = newPriorityEncoder(enc)
	}
	var enabler zapcore.LevelEnabler = level
	if o.LevelVar != nil {
		o.LevelVar.SetLevel(level)
		enabler = o.LevelVar
	}
	core := NewRateLimitCore(zapcore.NewCore(enc, zapcore.Lock(syncer{out}), enabler), o.RateLimit)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}

// IsTerminal reports whether f is a character device such as a terminal.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// syncer is an output whose Sync succeeds on streams that cannot be synced: fsync of the
// journal's socket, a pipe or a terminal fails with EINVAL, and there is nothing to flush.
type syncer struct{ *os.File }

func (s syncer) Sync() error {
	err := s.File.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.ENOTTY) {
		return nil
	}
	return err
}
