package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/stretchr/testify/require"
)

var kvsResultRE = regexp.MustCompile(`dry-run: KVS stream (\S+): (\d+) fragments persisted, (\d+) bytes ingested, \d+ PutMedia connections, (\d+) errors`)

// With kvssink built, the dry-run records into its localcloud's KVS through the real kvssink
// instead of local segments, says so and where to watch, and prints what KVS holds at the
// end. It finds kvssink through recording.kvs.plugin_dir (here its environment variable, as
// a developer points tests at a build elsewhere) from any directory.
func TestDryRunRecordsIntoKVSThroughKVSSink(t *testing.T) {
	dir, err := testclip.KVSSinkDir()
	if err != nil {
		t.Skip(err)
	}
	clip, side := testclip.Path(t, testclip.Ball)
	out := t.TempDir()
	cmd := exec.Command(binary, "dry-run", "--video", clip, "--duration", "12s", "--out", out)
	cmd.Dir = t.TempDir() // no .cache/kvssink here: the variable alone finds it
	cmd.Env = append(os.Environ(), testclip.KVSSinkDirEnv+"="+dir)
	stdout, err := cmd.Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	require.NoError(t, err, "dry-run failed:\n%s\n%s", stdout, stderr)
	require.Contains(t, string(stdout), "through kvssink ("+dir+", continuous)", "it says it records into KVS through kvssink")
	require.Contains(t, string(stdout), "/kvs/streams/", "and where to watch")
	m := kvsResultRE.FindStringSubmatch(string(stdout))
	require.NotNil(t, m, "what KVS holds is printed at the end:\n%s", stdout)
	fragments, _ := strconv.Atoi(m[2])
	bytes, _ := strconv.Atoi(m[3])
	// 12 s of the clip in fragments of one GOP; the first starts once kvssink is up.
	require.GreaterOrEqual(t, fragments, int(12/side.GOPSeconds)-2, "fragments persisted:\n%s", stdout)
	require.Positive(t, bytes)
	require.Equal(t, "0", m[4], "no ERROR acks")
	files, err := os.ReadDir(out + "/recordings")
	if err == nil {
		require.Empty(t, files, "no local segments when recording into KVS")
	}
}
