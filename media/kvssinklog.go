package media

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// KVSSinkLog routes what kvssink logs (through log4cplus, which would otherwise print DEBUG
// lines on stdout) into a zap logger. It writes a log4cplus properties file for kvssink's
// log-config property that sends kvssink's lines to a small rolling file, and follows that
// file. kvssink never waits for the reader: a stalled or stopped reader loses lines, never
// video.
type KVSSinkLog struct {
	props, file string
	log         *zap.Logger
	repeats     repeatFilter // used by the follower goroutine only
	cancel      context.CancelFunc
	done        chan struct{}
}

// kvssinkLogMaxBytes bounds the log file (log4cplus keeps one older file besides).
const kvssinkLogMaxBytes = 1 << 20

// StartKVSSinkLog writes dir/log4cplus.properties and follows dir/kvssink.log until Close.
// debug makes kvssink log at DEBUG level (else INFO and above).
func StartKVSSinkLog(dir string, log *zap.Logger, debug bool) (*KVSSinkLog, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kvssink log directory: %w", err)
	}
	l := &KVSSinkLog{props: filepath.Join(dir, "log4cplus.properties"), file: filepath.Join(dir, "kvssink.log"), log: log, done: make(chan struct{})}
	level := "INFO"
	if debug {
		level = "DEBUG"
	}
	// Lines are "<LEVEL> <message>"; multi-line messages continue without a level.
	props := fmt.Sprintf(`# Written by edgecam: kvssink's log4cplus configuration (kvssink's log-config property).
# edgecam follows %[2]s and copies each line into its own log.
log4cplus.rootLogger=%[1]s, Edgecam
log4cplus.appender.Edgecam=log4cplus::RollingFileAppender
log4cplus.appender.Edgecam.File=%[2]s
log4cplus.appender.Edgecam.MaxFileSize=%[3]d
log4cplus.appender.Edgecam.MaxBackupIndex=1
log4cplus.appender.Edgecam.ImmediateFlush=true
log4cplus.appender.Edgecam.layout=log4cplus::PatternLayout
log4cplus.appender.Edgecam.layout.ConversionPattern=%%p %%m%%n
`, level, l.file, kvssinkLogMaxBytes)
	if err := os.WriteFile(l.props, []byte(props), 0o600); err != nil {
		return nil, fmt.Errorf("kvssink log configuration: %w", err)
	}
	// Lines of an earlier run are not repeated: follow from the current end.
	var offset int64
	if st, err := os.Stat(l.file); err == nil {
		offset = st.Size()
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() {
		defer close(l.done)
		l.follow(ctx, offset)
	}()
	return l, nil
}

// ConfigPath is the properties file to give kvssink (KVSSinkOptions.LogConfig).
func (l *KVSSinkLog) ConfigPath() string { return l.props }

// Close stops following the file, after copying what it holds.
func (l *KVSSinkLog) Close() {
	l.cancel()
	<-l.done
}

// follow copies new lines of the file into the log, every 200 ms, across rotations.
func (l *KVSSinkLog) follow(ctx context.Context, offset int64) {
	var (
		f    *os.File
		ino  uint64
		rd   *bufio.Reader
		part []byte
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	drain := func() {
		for rd != nil {
			line, err := rd.ReadBytes('\n')
			if len(line) > 0 {
				part = append(part, line...)
				if line[len(line)-1] == '\n' {
					l.emit(bytes.TrimRight(part, "\r\n"))
					part = part[:0]
				}
			}
			if err != nil {
				return
			}
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if f == nil {
			if nf, err := os.Open(l.file); err == nil {
				f, rd = nf, bufio.NewReaderSize(nf, 64<<10)
				ino = inode(nf)
				if offset > 0 {
					if st, err := nf.Stat(); err == nil && st.Size() >= offset {
						_, _ = nf.Seek(offset, io.SeekStart)
					}
					offset = 0
				}
			}
		}
		drain()
		if f != nil {
			st, err := os.Stat(l.file)
			switch {
			case err != nil || inode2(st) != ino: // rotated (or removed): the rest was read above
				f.Close()
				f, rd = nil, nil
				if len(part) > 0 {
					l.emit(part)
					part = part[:0]
				}
				continue
			default:
				if pos, err := f.Seek(0, io.SeekCurrent); err == nil && st.Size() < pos-int64(rd.Buffered()) {
					_, _ = f.Seek(0, io.SeekStart) // truncated
					rd.Reset(f)
				}
			}
		}
		select {
		case <-ctx.Done():
			drain()
			if len(part) > 0 {
				l.emit(part)
			}
			return
		case <-tick.C:
		}
	}
}

func inode(f *os.File) uint64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return inode2(st)
}

func inode2(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

// kvssinkLevels maps log4cplus levels to zap's. kvssink's INFO lines are its life cycle
// (stream ready, connection set up, stopped), about one a minute: debug for edgecam, whose
// own lines say what matters (recording started, acknowledged, failed).
var kvssinkLevels = map[string]zapcore.Level{
	"TRACE": zapcore.DebugLevel, "DEBUG": zapcore.DebugLevel, "INFO": zapcore.DebugLevel,
	"WARN": zapcore.WarnLevel, "ERROR": zapcore.ErrorLevel, "FATAL": zapcore.ErrorLevel,
}

// kvssinkHarmless are warnings kvssink 3.6.0 gives in normal operation: at the start of
// every PutMedia (curl is not paused yet), and at the end of stream (collectpads hands it
// no buffer). They go to debug.
var kvssinkHarmless = []string{"Failed to un-pause curl with error: 43", "GStreamer buffer is invalid"}

// emit logs one kvssink line.
func (l *KVSSinkLog) emit(line []byte) {
	s := strings.TrimSpace(string(line))
	if s == "" {
		return
	}
	level := zapcore.DebugLevel // a continuation line: details (request headers, ...)
	lv, msg, _ := strings.Cut(s, " ")
	if zl, known := kvssinkLevels[lv]; known {
		level, s = zl, strings.TrimSpace(msg)
	}
	if level > zapcore.DebugLevel {
		for _, h := range kvssinkHarmless {
			if strings.Contains(s, h) {
				level = zapcore.DebugLevel
				break
			}
		}
	}
	ce := l.log.Check(level, "kvssink")
	if ce == nil {
		return
	}
	if level > zapcore.DebugLevel {
		// kvssink repeats its warnings at every retry (several a second while KVS is
		// unreachable): one line per kind every kvssinkRepeatWindow, with the count.
		n, ok := l.repeats.allow(s, time.Now())
		if !ok {
			return
		}
		if n > 0 {
			ce.Write(zap.String("says", s), zap.Int("repeated", n))
			return
		}
	}
	ce.Write(zap.String("says", s))
}

// kvssinkRepeatWindow is how often a repeated kvssink warning is logged.
const kvssinkRepeatWindow = 10 * time.Second

// repeatFilter lets a kind of line through once per window and counts the others.
type repeatFilter struct {
	seen map[string]*repeated
}

type repeated struct {
	at         time.Time
	suppressed int
}

// maxRepeatKinds bounds the memory of the filter.
const maxRepeatKinds = 256

// allow reports whether line may be logged now, and how many like it were held back since.
func (f *repeatFilter) allow(line string, now time.Time) (int, bool) {
	key := repeatKey(line)
	if f.seen == nil || len(f.seen) > maxRepeatKinds {
		f.seen = map[string]*repeated{}
	}
	r, ok := f.seen[key]
	if !ok {
		f.seen[key] = &repeated{at: now}
		return 0, true
	}
	if now.Sub(r.at) < kvssinkRepeatWindow {
		r.suppressed++
		return 0, false
	}
	n := r.suppressed
	r.at, r.suppressed = now, 0
	return n, true
}

// repeatKey is a line without its digits (handles, addresses, timecodes), so that lines
// that differ only in those are one kind.
func repeatKey(line string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, line)
}
