package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

const journald = "/lib/systemd/systemd-journald"

// startJournald runs a real systemd-journald in a journal namespace of its own (sockets in
// /run/systemd/journal.<ns>/, its own files), so that the test touches no other journal.
func startJournald(t *testing.T) (ns string) {
	t.Helper()
	if _, err := os.Stat(journald); err != nil {
		t.Fatalf("%s is missing: install the systemd package (scripts/install-deps.sh does)", journald)
	}
	if os.Geteuid() != 0 {
		t.Skip("systemd-journald needs root to run a journal namespace")
	}
	ns = fmt.Sprintf("edgecamtest%d", os.Getpid())
	cmd := exec.Command(journald, ns)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	machineID, _ := os.ReadFile("/etc/machine-id")
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		id := strings.TrimSpace(string(machineID))
		for _, dir := range []string{"/run/log/journal", "/var/log/journal"} {
			_ = os.RemoveAll(filepath.Join(dir, id+"."+ns))
		}
		_ = os.RemoveAll("/run/systemd/journal." + ns)
	})
	require.Eventually(t, func() bool {
		_, err := os.Stat("/run/systemd/journal." + ns + "/stdout")
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "journald did not start: %s", &out)
	return ns
}

// journalStreamFor connects to journald's stdout socket as systemd does for a service whose
// StandardError=journal (the stream header asks for "<N>" prefixes to be parsed), and
// returns the connection as a file with the JOURNAL_STREAM value that names it.
func journalStreamFor(t *testing.T, ns, identifier string) (*os.File, string) {
	t.Helper()
	conn, err := net.Dial("unix", "/run/systemd/journal."+ns+"/stdout")
	require.NoError(t, err)
	defer conn.Close()
	// identifier, unit, default priority (info), level_prefix, syslog, kmsg, console.
	_, err = fmt.Fprintf(conn, "%s\n\n6\n1\n0\n0\n0\n", identifier)
	require.NoError(t, err)
	f, err := conn.(*net.UnixConn).File()
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	require.NoError(t, syscall.Fstat(int(f.Fd()), &st))
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

type journalEntry struct {
	Message  string `json:"MESSAGE"`
	Priority string `json:"PRIORITY"`
}

func journalctl(t *testing.T, ns, identifier string, args ...string) []journalEntry {
	t.Helper()
	args = append([]string{"--namespace=" + ns, "--no-pager", "-o", "json", "SYSLOG_IDENTIFIER=" + identifier}, args...)
	out, err := exec.Command("journalctl", args...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("journalctl %v: %s", args, ee.Stderr)
	}
	require.NoError(t, err)
	var entries []journalEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e journalEntry
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "%s", sc.Bytes())
		entries = append(entries, e)
	}
	return entries
}

// TestJournalctlShowsExactlyTheErrors: the logger writes to a real journald stream (as under
// systemd); journalctl -p err returns exactly the error records, -p warning adds the
// warnings, and each line is stored with its priority.
func TestJournalctlShowsExactlyTheErrors(t *testing.T) {
	ns := startJournald(t)
	const id = "edgecam"
	f, env := journalStreamFor(t, ns, id)
	t.Setenv("JOURNAL_STREAM", env)
	log, err := New(Options{Level: "debug", Format: "json", Output: f})
	require.NoError(t, err)
	log.Debug("a debug line")
	log.Info("an info line")
	log.Warn("a warning", zap.String("element", "v4l2src0"))
	log.Error("first error", zap.Error(errors.New("camera gone")))
	log.Info("another info line")
	log.Error("second error")
	require.NoError(t, log.Sync())
	require.NoError(t, f.Close())

	var all []journalEntry
	require.Eventually(t, func() bool { all = journalctl(t, ns, id); return len(all) == 6 }, 10*time.Second, 50*time.Millisecond,
		"six records in the journal")
	want := map[string]string{"a debug line": "7", "an info line": "6", "a warning": "4", "first error": "3", "another info line": "6", "second error": "3"}
	for _, e := range all {
		require.False(t, strings.HasPrefix(e.Message, "<"), "journald stripped the prefix: %q", e.Message)
		found := false
		for msg, prio := range want {
			if strings.Contains(e.Message, `"msg":"`+msg+`"`) {
				require.Equal(t, prio, e.Priority, msg)
				found = true
			}
		}
		require.True(t, found, "unexpected record %q", e.Message)
	}
	errs := journalctl(t, ns, id, "-p", "err")
	require.Len(t, errs, 2, "journalctl -p err shows exactly the errors")
	require.Contains(t, errs[0].Message, "first error")
	require.Contains(t, errs[0].Message, "camera gone")
	require.Contains(t, errs[1].Message, "second error")
	require.Len(t, journalctl(t, ns, id, "-p", "warning"), 3, "-p warning adds the warning")
}
