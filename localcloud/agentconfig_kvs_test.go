package localcloud

import (
	"path/filepath"
	"testing"

	"github.com/edgecam/edgecam/config"
	"github.com/stretchr/testify/require"
)

// TestAgentConfigPointsRecordingAtLocalcloud: the written configuration loads and names
// localcloud's KVS endpoint as the recording control plane (kvssink's CONTROL_PLANE_URI).
func TestAgentConfigPointsRecordingAtLocalcloud(t *testing.T) {
	c := start(t, Options{})
	wrote, err := c.WriteAgentConfig(filepath.Join(t.TempDir(), "state"))
	require.NoError(t, err)
	require.True(t, wrote)
	loaded, err := config.Load(config.LoadOptions{Path: c.Paths().AgentConfig, Required: true})
	require.NoError(t, err)
	require.Equal(t, c.KVSEndpoint(), loaded.Recording.KVS.ControlPlaneURI)

	var cfg config.Config
	c.ConfigureAgent(&cfg)
	require.Equal(t, c.KVSEndpoint(), cfg.Recording.KVS.ControlPlaneURI)
}
