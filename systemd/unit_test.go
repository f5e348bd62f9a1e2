package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUnitVerifiedAndHardened runs check.sh: systemd-analyze verify is silent and the
// offline security exposure is at most 2.5 (make test prints the figure through it too).
func TestUnitVerifiedAndHardened(t *testing.T) {
	out, err := exec.Command("./check.sh").CombinedOutput()
	require.NoError(t, err, "%s", out)
	m := regexp.MustCompile(`exposure ([0-9.]+) `).FindSubmatch(out)
	require.NotNil(t, m, "%s", out)
	level, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	t.Logf("systemd-analyze security --offline=true: exposure %.1f", level)
	require.LessOrEqual(t, level, 2.5)
}

// TestCheckFailsOnWeakUnit: the check can fail — a unit without the sandbox is rejected.
func TestCheckFailsOnWeakUnit(t *testing.T) {
	weak := t.TempDir() + "/edgecam.service"
	var b strings.Builder
	for _, l := range unitLines(t) {
		if strings.HasPrefix(l, "Protect") || strings.HasPrefix(l, "SystemCall") || strings.HasPrefix(l, "CapabilityBoundingSet") {
			continue
		}
		b.WriteString(l + "\n")
	}
	require.NoError(t, os.WriteFile(weak, []byte(b.String()), 0o644))
	out, err := exec.Command("./check.sh", weak).CombinedOutput()
	require.Error(t, err, "%s", out)
	require.Contains(t, string(out), "is above 2.5")
}

func unitLines(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("edgecam.service")
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.NoError(t, sc.Err())
	return lines
}

// TestUnitDirectives: what the agent relies on is in the unit.
func TestUnitDirectives(t *testing.T) {
	set := map[string][]string{}
	for _, l := range unitLines(t) {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			set[k] = append(set[k], v)
		}
	}
	tests := []struct{ key, want string }{
		{"Type", "notify"},
		{"NotifyAccess", "main"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"WatchdogSec", "60s"},
		{"Restart", "on-failure"},
		{"RestartPreventExitStatus", "78"},
		{"StartLimitBurst", "5"},
		{"StartLimitIntervalSec", "30min"},
		{"DevicePolicy", "closed"},
		{"DeviceAllow", "char-video4linux rw"},
		{"DeviceAllow", "char-media rw"},
		{"DeviceAllow", "char-dma_heap rw"},
		{"DeviceAllow", "/dev/video11 rw"},
		{"CapabilityBoundingSet", ""},
		{"SystemCallFilter", "@system-service"},
		{"MemoryDenyWriteExecute", "yes"},
		{"UMask", "0077"},
		{"ProtectProc", "invisible"},
		{"PrivateUsers", "yes"},
		{"SupplementaryGroups", "video"},
		{"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.want, func(t *testing.T) {
			require.Contains(t, set[tt.key], tt.want)
		})
	}
}
