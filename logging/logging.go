// Package logging builds edgecam's zap logger: a coloured console encoder on a terminal,
// JSON lines otherwise (journald, files, pipes).
package logging

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options choose the level and encoding.
type Options struct {
	Level  string // debug, info, warn, error
	Format string // auto, console, json
	// Output is where records go; nil means standard error.
	Output *os.File
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
	core := zapcore.NewCore(enc, zapcore.Lock(out), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}

// IsTerminal reports whether f is a character device such as a terminal.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
