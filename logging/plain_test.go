package logging

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
)

func TestFprintln(t *testing.T) {
	service, journal, env := journalStream(t)
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer file.Close()
	const msg = "camera /dev/video9: no such file\n  check media.source.device"
	tests := []struct {
		name  string
		w     io.Writer
		level zapcore.Level
		read  func() string
		want  string
	}{
		{"journal stream, error", service, zapcore.ErrorLevel, func() string { return readN(t, journal, 2) },
			"<3>edgecam: camera /dev/video9: no such file\n<3>  check media.source.device\n"},
		{"journal stream, warning", service, zapcore.WarnLevel, func() string { return readN(t, journal, 2) },
			"<4>edgecam: camera /dev/video9: no such file\n<4>  check media.source.device\n"},
		{"a file", file, zapcore.ErrorLevel, func() string { b, err := os.ReadFile(file.Name()); require.NoError(t, err); return string(b) },
			"edgecam: " + msg + "\n"},
	}
	t.Setenv("JOURNAL_STREAM", env)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, Fprintln(tt.w, tt.level, "edgecam:", msg))
			require.Equal(t, tt.want, tt.read())
		})
	}
	t.Run("not a file", func(t *testing.T) {
		var b bytes.Buffer
		require.NoError(t, Fprintln(&b, zapcore.ErrorLevel, "edgecam:", errors.New("boom")))
		require.Equal(t, "edgecam: boom\n", b.String())
	})
}

// readN reads from the journal's end of the stream until it has n lines.
func readN(t *testing.T, f *os.File, n int) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 4096)
	for bytes.Count(got, []byte("\n")) < n {
		k, err := f.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:k]...)
	}
	return string(got)
}

// TestFprintlnShowsInJournalctlErrors: a command's last words written with Fprintln to a
// real journald stream are filed as errors, every line of them.
func TestFprintlnShowsInJournalctlErrors(t *testing.T) {
	ns := startJournald(t)
	const id = "edgecam"
	f, env := journalStreamFor(t, ns, id)
	t.Setenv("JOURNAL_STREAM", env)
	require.NoError(t, Fprintln(f, zapcore.ErrorLevel, "edgecam:", "/etc/edgecam/edgecam.yaml has 2 problems:\n  log.level: \"chatty\" is not allowed\n  media.source.kindd: unknown key"))
	require.NoError(t, f.Close())
	var errs []journalEntry
	require.Eventually(t, func() bool { errs = journalctl(t, ns, id, "-p", "err"); return len(errs) >= 3 }, 10*time.Second, 50*time.Millisecond,
		"three error records in the journal")
	require.Len(t, errs, 3, "every line is an error")
	require.Len(t, journalctl(t, ns, id), 3, "and nothing else")
	for _, e := range errs {
		require.Equal(t, "3", e.Priority)
		require.False(t, strings.HasPrefix(e.Message, "<"), "journald stripped the prefix: %q", e.Message)
	}
	require.Equal(t, "edgecam: /etc/edgecam/edgecam.yaml has 2 problems:", errs[0].Message)
}
