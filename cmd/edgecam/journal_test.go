package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLastWordsUnderJournal: under systemd (standard error is the stream JOURNAL_STREAM
// names) the error a command ends with is printed with the error priority on every line, so
// that `journalctl -p err -u edgecam` shows why the service stopped, not only what the
// logger wrote before.
func TestLastWordsUnderJournal(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("log:\n  level: loud\nmedia:\n  encoder:\n    bitrate_kbps: 10\n"), 0o600))
	noCamera := filepath.Join(dir, "camera.yaml")
	require.NoError(t, os.WriteFile(noCamera, []byte("state_dir: "+filepath.Join(dir, "state")+
		"\nmetrics:\n  listen: \"\"\nmotion:\n  enabled: false\nrecording:\n  mode: \"off\"\nmedia:\n  source:\n    kind: v4l2\n    device: "+
		filepath.Join(dir, "video9")+"\n"), 0o600))
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // in the error lines
	}{
		{"configuration error", []string{"config", "validate", "--config", bad}, exitConfig, []string{"has 2 problems", "log.level:", "media.encoder.bitrate_kbps:"}},
		{"camera missing", []string{"run", "--config", noCamera}, exitFailure, []string{"video9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			require.NoError(t, err)
			service, journal := os.NewFile(uintptr(fds[0]), "service"), os.NewFile(uintptr(fds[1]), "journal")
			defer journal.Close()
			var st syscall.Stat_t
			require.NoError(t, syscall.Fstat(fds[0], &st))
			t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))

			var stdout bytes.Buffer
			code := execute(context.Background(), tt.args, &stdout, service)
			require.NoError(t, service.Close())
			var all bytes.Buffer
			_, err = all.ReadFrom(journal)
			require.NoError(t, err)
			require.Equal(t, tt.wantCode, code, "%s", all.String())

			var errs []string
			for line := range strings.SplitSeq(strings.TrimSuffix(all.String(), "\n"), "\n") {
				require.Regexp(t, `^<[0-7]>`, line, "every line carries its priority")
				if l, ok := strings.CutPrefix(line, "<3>"); ok {
					errs = append(errs, l)
				}
			}
			text := strings.Join(errs, "\n")
			require.Contains(t, text, "edgecam: ", "the last words are an error")
			for _, w := range tt.want {
				require.Contains(t, text, w)
			}
		})
	}
}
