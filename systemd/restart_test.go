package systemd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// preventedExitStatuses returns the exit codes the unit's RestartPreventExitStatus= lists
// (assignments add up; an empty one resets the list, as systemd reads it). Signal names in
// the list are left out: only codes matter here.
func preventedExitStatuses(t *testing.T) []int {
	t.Helper()
	var codes []int
	for _, l := range unitLines(t) {
		v, ok := strings.CutPrefix(l, "RestartPreventExitStatus=")
		if !ok {
			continue
		}
		if strings.TrimSpace(v) == "" {
			codes = nil
			continue
		}
		for _, f := range strings.Fields(v) {
			if n, err := strconv.Atoi(f); err == nil {
				codes = append(codes, n)
			}
		}
	}
	return codes
}

// TestCrashesAreRestarted: the Go runtime ends a process that panics, or dies of a fatal
// runtime error (a deadlock, a fault in cgo code), with exit status 2. Restart=on-failure
// restarts on any non-zero status unless RestartPreventExitStatus= lists it, so the unit must
// not list the status a crash exits with: a camera whose agent crashed in the field would
// otherwise stay down until someone came (RestartPreventExitStatus=2 did exactly that).
func TestCrashesAreRestarted(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot build the crashing programs")
	}
	set := map[string][]string{}
	for _, l := range unitLines(t) {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			set[k] = append(set[k], v)
		}
	}
	require.Equal(t, []string{"on-failure"}, set["Restart"])
	prevented := preventedExitStatuses(t)

	tests := []struct {
		name string
		body string
	}{
		{"panic in a goroutine", `go func() { panic("camera driver returned garbage") }(); select {}`},
		{"nil pointer dereference", `var p *struct{ n int }; println(p.n)`},
		{"fatal error: deadlock", `ch := make(chan int); <-ch`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module crash\n\ngo 1.21\n"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {\n\t"+tt.body+"\n}\n"), 0o644))
			build := exec.Command(goBin, "build", "-o", "crash", ".")
			build.Dir = dir
			build.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
			out, err := build.CombinedOutput()
			require.NoError(t, err, "%s", out)

			out, err = exec.Command(filepath.Join(dir, "crash")).CombinedOutput()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "the program crashes: %v\n%s", err, out)
			code := ee.ExitCode()
			require.NotZero(t, code, "%s", out)
			require.False(t, slices.Contains(prevented, code),
				"a Go crash exits with status %d, which RestartPreventExitStatus=%v keeps systemd from restarting:\n%s", code, prevented, out)
		})
	}
}
