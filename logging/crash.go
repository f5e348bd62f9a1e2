package logging

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"syscall"
)

// CrashPriority is the journal priority of a crash report: critical.
const CrashPriority = 2

// JournalCrashOutput makes the Go runtime's crash report (an unrecovered panic, a fatal
// error) reach the journal as a critical record too. The runtime writes that report to
// standard error without a priority prefix, so journald files it under the stream's default
// (info) and `journalctl -p err` would not show why the service died. When standard error is
// the journal stream (UnderJournal), it opens a second stream to the same journald, with
// priority 2 for every line and the given identifier, and hands it to debug.SetCrashOutput
// (the report still goes to standard error as well). Elsewhere it does nothing and returns
// false.
func JournalCrashOutput(identifier string) (bool, error) {
	if !UnderJournal(os.Stderr) {
		return false, nil
	}
	path, err := peerPath(os.Stderr)
	if err != nil {
		return false, fmt.Errorf("crash output to the journal: %w", err)
	}
	f, err := dialJournalStream(path, identifier, CrashPriority)
	if err != nil {
		return false, fmt.Errorf("crash output to the journal: %w", err)
	}
	defer f.Close() // SetCrashOutput keeps its own duplicate
	if err := debug.SetCrashOutput(f, debug.CrashOptions{}); err != nil {
		return false, fmt.Errorf("crash output to the journal: %w", err)
	}
	return true, nil
}

// peerPath returns the path of the socket f is connected to (journald's stdout socket, in
// whatever journal namespace the service logs to).
func peerPath(f *os.File) (string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", err
	}
	var sa syscall.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = syscall.Getpeername(int(fd)) }); err != nil {
		return "", err
	}
	if serr != nil {
		return "", fmt.Errorf("standard error's peer: %w", serr)
	}
	un, ok := sa.(*syscall.SockaddrUnix)
	if !ok || un.Name == "" {
		return "", errors.New("standard error is not connected to a named unix socket")
	}
	return un.Name, nil
}

// dialJournalStream connects to journald's stdout socket as systemd does for a service: the
// header names the identifier and the priority of every line (no "<N>" prefixes parsed).
func dialJournalStream(path, identifier string, priority int) (*os.File, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// identifier, unit, priority, level_prefix, forward to syslog, kmsg, console.
	if _, err := fmt.Fprintf(conn, "%s\n\n%d\n0\n0\n0\n0\n", identifier, priority); err != nil {
		return nil, err
	}
	return conn.(*net.UnixConn).File()
}
