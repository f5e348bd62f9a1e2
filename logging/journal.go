package logging

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// UnderJournal reports whether f is the stream systemd connected to the journal: the
// JOURNAL_STREAM variable ("device:inode") names the same file as f. A service whose
// output was redirected elsewhere (a file, a pipe to another program) does not match.
func UnderJournal(f *os.File) bool {
	return matchesJournalStream(os.Getenv("JOURNAL_STREAM"), f)
}

func matchesJournalStream(env string, f *os.File) bool {
	if env == "" || f == nil {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(env, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	st, err := f.Stat()
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && uint64(sys.Dev) == dev && uint64(sys.Ino) == ino //nolint:unconvert // field types differ between architectures
}

// Priority returns the syslog priority journald files a record of level l under:
// debug 7, info 6, warn 4, error 3, and 2 (critical) for panics and fatal errors.
func Priority(l zapcore.Level) int {
	switch {
	case l <= zapcore.DebugLevel:
		return 7
	case l == zapcore.InfoLevel:
		return 6
	case l == zapcore.WarnLevel:
		return 4
	case l == zapcore.ErrorLevel:
		return 3
	default:
		return 2
	}
}

// priorityEncoder starts every line of a record with its sd-daemon priority prefix ("<3>"),
// which journald strips and stores as PRIORITY=, so that "journalctl -p err" selects the
// errors. A record the inner encoder spreads over several lines (a stack trace) gets the
// prefix on each line, so that no line falls back to the stream's default priority.
type priorityEncoder struct {
	zapcore.Encoder
	pool buffer.Pool
}

func newPriorityEncoder(enc zapcore.Encoder) zapcore.Encoder {
	return &priorityEncoder{Encoder: enc, pool: buffer.NewPool()}
}

func (e *priorityEncoder) Clone() zapcore.Encoder {
	return &priorityEncoder{Encoder: e.Encoder.Clone(), pool: e.pool}
}

func (e *priorityEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	inner, err := e.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return nil, err
	}
	defer inner.Free()
	prefix := fmt.Sprintf("<%d>", Priority(ent.Level))
	out := e.pool.Get()
	text := strings.TrimSuffix(inner.String(), "\n")
	for line := range strings.SplitSeq(text, "\n") {
		out.AppendString(prefix)
		out.AppendString(line)
		out.AppendByte('\n')
	}
	return out, nil
}
