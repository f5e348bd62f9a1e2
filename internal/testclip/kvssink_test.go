package testclip

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edgecam/edgecam/config"
	"github.com/stretchr/testify/require"
)

// The variable that points tests at a built kvssink is one the agent accepts: tests start
// agent processes with their own environment, and the agent refuses an EDGECAM_* variable
// that sets no configuration key (EDGECAM_KVSSINK_DIR did, so setting it broke the dry-run
// and every test that runs the agent binary).
func TestKVSSinkDirFromTheAgentsVariable(t *testing.T) {
	require.Equal(t, config.EnvName("recording.kvs.plugin_dir"), KVSSinkDirEnv)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "libgstkvssink.so"), nil, 0o644))
	t.Setenv(KVSSinkDirEnv, dir)
	got, err := KVSSinkDir()
	require.NoError(t, err)
	require.Equal(t, dir, got)

	empty := t.TempDir()
	t.Setenv(KVSSinkDirEnv, empty)
	_, err = KVSSinkDir()
	require.ErrorContains(t, err, "run make kvssink")
	require.ErrorContains(t, err, KVSSinkDirEnv)

	_, problems := config.Load(config.LoadOptions{})
	require.NoError(t, problems, "the agent accepts %s", KVSSinkDirEnv)
}
