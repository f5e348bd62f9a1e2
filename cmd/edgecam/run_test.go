package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lineLog keeps a process's output lines and wakes waiters on each.
type lineLog struct {
	mu    sync.Mutex
	lines []string
	added chan struct{}
}

func newLineLog(r io.Reader) *lineLog {
	l := &lineLog{added: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			l.mu.Unlock()
			select {
			case l.added <- struct{}{}:
			default:
			}
		}
	}()
	return l
}

func (l *lineLog) wait(t *testing.T, substr string, within time.Duration) string {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for _, line := range l.lines {
			if strings.Contains(line, substr) {
				l.mu.Unlock()
				return line
			}
		}
		all := strings.Join(l.lines, "\n")
		l.mu.Unlock()
		select {
		case <-l.added:
		case <-deadline.C:
			t.Fatalf("no %q within %s in:\n%s", substr, within, all)
		}
	}
}

// TestRunUnderSystemd runs the real binary as systemd would: NOTIFY_SOCKET, WATCHDOG_USEC,
// JOURNAL_STREAM unset (output to a pipe, JSON lines). It says READY=1 with a status once
// frames flow, reloads on SIGHUP without exiting (the bitrate changes live), and stops
// cleanly on SIGTERM with STOPPING=1.
func TestRunUnderSystemd(t *testing.T) {
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	require.NoError(t, err)
	defer sock.Close()
	notes := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(buf[:n])
		}
	}()
	waitNote := func(substr string, within time.Duration) string {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case n, ok := <-notes:
				require.True(t, ok)
				if strings.Contains(n, substr) {
					return n
				}
			case <-deadline:
				t.Fatalf("no sd_notify message with %q within %s", substr, within)
			}
		}
	}

	cfgPath := filepath.Join(dir, "edgecam.yaml")
	write := func(bitrate string) {
		require.NoError(t, os.WriteFile(cfgPath, []byte(`state_dir: `+filepath.Join(dir, "state")+`
metrics:
  listen: 127.0.0.1:0
motion:
  enabled: false
media:
  source:
    kind: test
    width: 320
    height: 180
  encoder:
    kind: x264
    bitrate_kbps: `+bitrate+`
recording:
  mode: "off"
`), 0o600))
	}
	write("1500")
	cmd := exec.Command(binary, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=4000000", "WATCHDOG_PID=", "JOURNAL_STREAM=")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	logs := newLineLog(stderr)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()

	ready := waitNote("READY=1", 30*time.Second)
	require.Contains(t, ready, "STATUS=streaming (test); cloud off")
	waitNote("WATCHDOG=1", 5*time.Second)
	logs.wait(t, `"systemd watchdog on"`, time.Second)

	write("700")
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	waitNote("RELOADING=1", 10*time.Second)
	line := logs.wait(t, "configuration reloaded while running", 10*time.Second)
	require.Contains(t, line, "media.encoder.bitrate_kbps")
	logs.wait(t, `"kbps":700`, 5*time.Second)
	waitNote("READY=1", 5*time.Second)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	waitNote("STOPPING=1", 10*time.Second)
	select {
	case err := <-exited:
		require.NoError(t, err, "a clean stop exits 0")
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30 s of SIGTERM")
	}
}
