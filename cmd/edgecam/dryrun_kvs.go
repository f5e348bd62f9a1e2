//go:build !nolocalcloud

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/localcloud"
)

// dryRunKVSSinkDir returns where dry-run finds a built kvssink: recording.kvs.plugin_dir
// (from --config or $EDGECAM_RECORDING_KVS_PLUGIN_DIR), or scripts/build-kvssink.sh's
// default output (.cache/kvssink, from the repository root); "" when none holds
// libgstkvssink.so.
func dryRunKVSSinkDir(c *config.Config) string {
	for _, d := range []string{c.Recording.KVS.PluginDir, filepath.Join(".cache", "kvssink")} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "libgstkvssink.so")); err == nil {
			if abs, err := filepath.Abs(d); err == nil {
				return abs
			}
		}
	}
	return ""
}

// dryRunKVS points KVS recording at localcloud's KVS through the real kvssink when it is
// built, instead of local segments; it reports whether it did.
func dryRunKVS(c *config.Config, cloud *localcloud.Cloud) bool {
	dir := dryRunKVSSinkDir(c)
	if dir == "" || c.Recording.Mode == config.RecordOff {
		return false
	}
	c.Recording.KVS.Enabled = true
	c.Recording.KVS.PluginDir = dir
	c.Recording.KVS.ControlPlaneURI = cloud.KVSEndpoint()
	c.Recording.KVS.CreateStream = true
	c.Recording.Local.Enabled = false
	return true
}

// printKVSResult says what localcloud's KVS holds of the dry-run's stream.
func printKVSResult(w io.Writer, cloud *localcloud.Cloud, stream string) {
	st, err := cloud.KVSStreamStats(stream)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "dry-run: KVS stream %s: %d fragments persisted, %d bytes ingested, %d PutMedia connections, %d errors\n",
		stream, st.FragmentsPersisted, st.BytesIngested, st.Connections, len(st.Errors))
}

// printKVSWhere says where a dry-run's KVS recording goes and how to watch it.
func printKVSWhere(w io.Writer, cfg config.Config, cloud *localcloud.Cloud, thing string) {
	stream := cfg.Recording.KVS.StreamName
	if stream == "" {
		stream = thing
	}
	if stream == "" {
		stream = "<the thing name>"
	}
	fmt.Fprintf(w, "  kvs:         recording into localcloud's KVS stream %s through kvssink (%s, %s)\n", stream, cfg.Recording.KVS.PluginDir, cfg.Recording.Mode)
	fmt.Fprintf(w, "               watch: %s/kvs/streams/%s/stats (counters); ListFragments and GetClip at %s (fragments stored under %s)\n",
		cloud.KVSEndpoint(), stream, cloud.KVSEndpoint(), filepath.Dir(cloud.Paths().KVSStreams))
}
