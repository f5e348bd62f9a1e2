package localcloud

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// awsSDK installs (once, under a lock) AWS's IoT Device SDK v2 for JavaScript from the npm
// registry into testdata/awssdk and returns that directory.
func awsSDK(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/install-deps.sh")
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "awssdk"))
	require.NoError(t, err)
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "aws-iot-device-sdk-v2")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "npm ci:\n%s", out)
	}
	return dir
}

type sdkOutcome struct {
	CertificateID         string            `json:"certificateId"`
	CertificatePemPresent bool              `json:"certificatePemPresent"`
	TokenPresent          bool              `json:"tokenPresent"`
	PrivateKeyPresent     bool              `json:"privateKeyPresent"`
	ThingName             string            `json:"thingName"`
	DeviceConfiguration   map[string]string `json:"deviceConfiguration"`
	Error                 string            `json:"error"`
	ModeledError          *rejection        `json:"modeledError"`
}

// TestAWSDeviceSDKFleetProvisioning checks localcloud's fleet provisioning against AWS's
// own client: the IoT Device SDK v2 for JavaScript, over MQTT 5 (aws-crt).
func TestAWSDeviceSDKFleetProvisioning(t *testing.T) {
	sdk := awsSDK(t)
	c := start(t, Options{AllowSerials: []string{serial, "SDK-KEYS-1"}})
	_, port, err := splitHostPort(c.MQTTEndpoint())
	require.NoError(t, err)
	csrFile := filepath.Join(t.TempDir(), "device.csr")
	require.NoError(t, os.WriteFile(csrFile, []byte(csrPEM(t)), 0o600))

	tests := []struct {
		name, serial, template, csr string
		check                       func(t *testing.T, o sdkOutcome)
	}{
		{"CreateCertificateFromCsr and RegisterThing", serial, DefaultTemplate, csrFile, func(t *testing.T, o sdkOutcome) {
			require.Empty(t, o.Error)
			require.Len(t, o.CertificateID, 64)
			require.True(t, o.CertificatePemPresent)
			require.True(t, o.TokenPresent)
			require.Equal(t, serial, o.ThingName)
			require.Equal(t, serial, o.DeviceConfiguration["kvsStreamName"])
			rec, ok := c.Certificate(o.CertificateID)
			require.True(t, ok)
			require.Equal(t, StatusActive, rec.Status)
		}},
		{"CreateKeysAndCertificate", "SDK-KEYS-1", DefaultTemplate, "keys", func(t *testing.T, o sdkOutcome) {
			require.Empty(t, o.Error)
			require.True(t, o.PrivateKeyPresent)
			require.Equal(t, "SDK-KEYS-1", o.ThingName)
		}},
		{"refused serial", "SDK-UNKNOWN-1", DefaultTemplate, csrFile, func(t *testing.T, o sdkOutcome) {
			require.NotEmpty(t, o.Error)
			require.NotNil(t, o.ModeledError, "the SDK parsed the rejected payload: %s", o.Error)
			require.Equal(t, 403, o.ModeledError.StatusCode)
			require.Equal(t, "AccessDenied", o.ModeledError.ErrorCode)
			require.NotEmpty(t, o.ModeledError.ErrorMessage)
		}},
		{"unknown template", serial, "nope", csrFile, func(t *testing.T, o sdkOutcome) {
			require.NotNil(t, o.ModeledError, "the SDK parsed the rejected payload: %s", o.Error)
			require.Equal(t, 404, o.ModeledError.StatusCode)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := c.Paths()
			cmd := exec.Command("node", "fleet.js", "localhost", strconv.Itoa(port), p.CA, p.ClaimCert, p.ClaimKey, tt.template, tt.serial, tt.csr)
			cmd.Dir = sdk
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, "node fleet.js: %s\n%s", out, stderr.String())
			var o sdkOutcome
			require.NoError(t, json.Unmarshal(bytes.TrimSpace(out), &o), "%s", out)
			tt.check(t, o)
		})
	}
}
