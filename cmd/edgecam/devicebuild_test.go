package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The device build (-tags nolocalcloud, packaging/build-deb.sh) leaves localcloud, its MQTT
// broker and the fleet load generator out of the binary, and the commands that need them say
// where to find them instead of being unknown.
func TestDeviceBuildLeavesLocalcloudOut(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "nolocalcloud", ".").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/edgecam/edgecam/agent")
	for _, d := range deps {
		for _, left := range []string{"github.com/edgecam/edgecam/localcloud", "github.com/mochi-mqtt/", "github.com/edgecam/edgecam/provisioning/fleetload"} {
			require.False(t, strings.HasPrefix(d, left), "the device build links %s", d)
		}
	}

	bin := filepath.Join(t.TempDir(), "edgecam")
	build, err := exec.Command("go", "build", "-tags", "nolocalcloud", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", build)
	for _, tc := range []struct{ args []string }{
		{args: []string{"dry-run", "--duration", "1s"}},
		{args: []string{"localcloud"}},
		{args: []string{"localcloud", "loadtest", "--devices", "5"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := exec.Command(bin, tc.args...).CombinedOutput()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "%v: %s", err, out)
			require.Equal(t, exitConfig, ee.ExitCode(), "%s", out)
			require.Contains(t, string(out), "edgecam "+tc.args[0]+": not in this build")
			require.Contains(t, string(out), "make build")
		})
	}
	// The agent's own commands are all there.
	help, err := exec.Command(bin, "--help").CombinedOutput()
	require.NoError(t, err, "%s", help)
	for _, c := range []string{"run", "provision", "devices", "motion", "config", "version"} {
		require.Contains(t, string(help), "\n  "+c+" ")
	}
}
