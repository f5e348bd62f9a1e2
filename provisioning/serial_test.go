package provisioning

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
	return root
}

func TestDetectSerial(t *testing.T) {
	const pi3 = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\n\nHardware\t: BCM2835\nRevision\t: a02082\nSerial\t\t: 00000000b211cf11\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n"
	tests := []struct {
		name  string
		files map[string]string
		want  string
		err   string
	}{
		{"Raspberry Pi cpuinfo", map[string]string{"proc/cpuinfo": pi3, "etc/machine-id": "abc\n"}, "BCM2835-00000000b211cf11", ""},
		{"64-bit kernel without Hardware line", map[string]string{
			"proc/cpuinfo":                "processor\t: 0\nSerial\t\t: 10000000abcdef01\n",
			"proc/device-tree/compatible": "raspberrypi,4-model-b\x00brcm,bcm2711\x00",
		}, "BCM2711-10000000abcdef01", ""},
		{"device-tree serial", map[string]string{
			"proc/cpuinfo":                   "processor\t: 0\n",
			"proc/device-tree/serial-number": "c0ffee42\x00",
			"proc/device-tree/compatible":    "vendor,board\x00rockchip,rk3588\x00",
		}, "RK3588-c0ffee42", ""},
		{"zero serial falls through to machine-id", map[string]string{
			"proc/cpuinfo":   "Serial\t\t: 0000000000000000\n",
			"etc/machine-id": "4c4c4544004e3510804cb4c04f4d3332\n",
		}, "4c4c4544004e3510804cb4c04f4d3332", ""},
		{"nothing", map[string]string{}, "", "set device.serial"},
		{"unusable characters", map[string]string{"etc/machine-id": "ab$cd"}, "", "not usable as a thing name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectSerial(fakeRoot(t, tt.files))
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestDetectSerialOnThisMachine(t *testing.T) {
	s, err := DetectSerial("/")
	require.NoError(t, err, "this machine has /etc/machine-id at least")
	require.Regexp(t, serialRE, s)
}
