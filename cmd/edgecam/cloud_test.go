package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startLocalcloudProcess runs "edgecam localcloud" on free ports and returns its directory
// once it serves.
func startLocalcloudProcess(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lc")
	cmd := exec.Command(binary, "localcloud", "--dir", dir, "--mqtt-port", "0", "--credentials-port", "0", "--allow", "FACTORY-0001")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	ready := make(chan string, 1)
	var out strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "try: edgecam run") {
				ready <- out.String()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case text := <-ready:
		require.Contains(t, text, "MQTT (AWS IoT Core, fleet provisioning): 127.0.0.1:")
		require.Contains(t, text, "agent configuration (written)")
	case <-time.After(20 * time.Second):
		t.Fatalf("localcloud did not start:\n%s", stderr.String())
	}
	t.Cleanup(func() {
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		require.NoError(t, cmd.Wait(), "localcloud exits 0 on SIGTERM:\n%s", stderr.String())
	})
	return dir
}

func TestProvisionCommand(t *testing.T) {
	dir := startLocalcloudProcess(t)
	cfg := filepath.Join(dir, "edgecam.yaml")
	for _, f := range []string{"ca.pem", "claim.pem", "claim.key", "allowed-serials.txt", "edgecam.yaml"} {
		require.FileExists(t, filepath.Join(dir, f))
	}

	provision := func(env ...string) (string, string, int) {
		cmd := exec.Command(binary, "provision", "--config", cfg)
		cmd.Env = append(os.Environ(), env...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return o.String(), e.String(), code
	}

	out, errOut, code := provision("EDGECAM_DEVICE_SERIAL=FACTORY-0001")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "provisioned as FACTORY-0001")
	require.Contains(t, out, "connected to 127.0.0.1:")

	out, errOut, code = provision("EDGECAM_DEVICE_SERIAL=FACTORY-0001")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "already provisioned as FACTORY-0001")
	require.Contains(t, out, "nothing to do")

	// Another device (another state directory) whose serial is not on the list.
	_, errOut, code = provision("EDGECAM_DEVICE_SERIAL=STRANGER-9", "EDGECAM_STATE_DIR="+t.TempDir())
	require.Equal(t, exitFailure, code)
	require.Contains(t, errOut, "RegisterThing rejected: statusCode 403, errorCode AccessDenied")
	require.Contains(t, errOut, "STRANGER-9")
}

func TestProvisionNeedsEndpoint(t *testing.T) {
	_, errOut, code := run(t, "provision", "--config", filepath.Join(t.TempDir(), "none.yaml"))
	require.Equal(t, exitConfig, code)
	require.Contains(t, errOut, "does not exist")
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	require.NoError(t, os.WriteFile(empty, []byte("log:\n  level: info\n"), 0o600))
	_, errOut, code = run(t, "provision", "--config", empty)
	require.Equal(t, exitConfig, code)
	require.Contains(t, errOut, "iot.endpoint is not set")
}
