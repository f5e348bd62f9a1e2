package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edgecam/edgecam/config"
	"github.com/stretchr/testify/require"
)

func TestKVSSinkCAFile(t *testing.T) {
	dir := t.TempDir()
	crt := filepath.Join(dir, "AmazonRootCA1.crt")
	pem := filepath.Join(dir, "root.PEM")
	require.NoError(t, os.WriteFile(crt, []byte("CERT"), 0o600))
	require.NoError(t, os.WriteFile(pem, []byte("CERT"), 0o600))
	state := filepath.Join(dir, "state")
	require.NoError(t, os.MkdirAll(state, 0o700))
	tests := []struct {
		name, in, want, err string
	}{
		{"none", "", "", ""},
		{"a .pem is used as it is", pem, pem, ""},
		{"a directory is used as it is", dir, dir, ""},
		{"another name is copied to a .pem", crt, filepath.Join(state, "ca.pem"), ""},
		{"a missing file is an error naming the key", filepath.Join(dir, "nope.crt"), "", "recording.kvs.ca_cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kvssinkCAFile(tt.in, state)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestKVSCACertDefaultsToIoTCAForHTTPS(t *testing.T) {
	cfg := config.Default()
	cfg.IoT.CACert = "/etc/edgecam/ca.pem"
	require.Empty(t, kvsCACert(cfg), "AWS's own control plane: the system's CAs")
	cfg.Recording.KVS.ControlPlaneURI = "http://127.0.0.1:18444"
	require.Empty(t, kvsCACert(cfg))
	cfg.Recording.KVS.ControlPlaneURI = "https://kvs.example:18444"
	require.Equal(t, "/etc/edgecam/ca.pem", kvsCACert(cfg))
	cfg.Recording.KVS.CACert = "/etc/edgecam/kvs-ca.pem"
	require.Equal(t, "/etc/edgecam/kvs-ca.pem", kvsCACert(cfg))
}
