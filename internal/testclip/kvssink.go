package testclip

import (
	"fmt"
	"os"
	"path/filepath"
)

// KVSSinkDirEnv names the directory of a built kvssink for tests and the dry-run. It is the
// agent's own variable for recording.kvs.plugin_dir, so that an agent started with it in its
// environment accepts it (the agent refuses EDGECAM_* variables that set no key).
const KVSSinkDirEnv = "EDGECAM_RECORDING_KVS_PLUGIN_DIR"

// KVSSinkDir finds the kvssink plugin scripts/build-kvssink.sh built, for tests: the
// directory $EDGECAM_RECORDING_KVS_PLUGIN_DIR names, else the script's output
// <repo>/.cache/kvssink, else its cache ~/.cache/edgecam/kvssink/<inputs>/. The error says
// how to build it; tests skip on it.
func KVSSinkDir() (string, error) {
	var dirs []string
	if d := os.Getenv(KVSSinkDirEnv); d != "" {
		dirs = append(dirs, d)
	} else {
		if root, err := Root(); err == nil {
			dirs = append(dirs, filepath.Join(root, ".cache", "kvssink"))
		}
		if home, err := os.UserHomeDir(); err == nil {
			matches, _ := filepath.Glob(filepath.Join(home, ".cache", "edgecam", "kvssink", "*", "libgstkvssink.so"))
			for _, m := range matches {
				dirs = append(dirs, filepath.Dir(m))
			}
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "libgstkvssink.so")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("kvssink is not built (no libgstkvssink.so in %v): run make kvssink or scripts/build-kvssink.sh (or set %s)", dirs, KVSSinkDirEnv)
}
