package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUnitPreventsRestartOnConfigErrors: the service unit does not restart the agent after a
// configuration error (exitConfig is in its RestartPreventExitStatus=), and that code is not
// the one the Go runtime exits with after a panic or fatal error (2), which must restart
// (systemd's TestCrashesAreRestarted checks the unit's side).
func TestUnitPreventsRestartOnConfigErrors(t *testing.T) {
	f, err := os.Open("../../systemd/edgecam.service")
	require.NoError(t, err)
	defer f.Close()
	var prevented []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RestartPreventExitStatus="); ok {
			for _, field := range strings.Fields(v) {
				if n, err := strconv.Atoi(field); err == nil {
					prevented = append(prevented, n)
				}
			}
		}
	}
	require.NoError(t, sc.Err())
	require.Contains(t, prevented, exitConfig, "a configuration error is not restarted")
	require.NotEqual(t, 2, exitConfig, "2 is what a Go panic exits with: crashes must restart")
	require.NotContains(t, []int{exitOK, exitFailure}, exitConfig)
}
