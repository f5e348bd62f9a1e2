package localcloud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// awsSDKJS installs (once, under a lock) AWS's JavaScript SDK v3 KVS clients from the npm
// registry into testdata/awssdk-js and returns that directory.
func awsSDKJS(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/install-deps.sh")
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "awssdk-js"))
	require.NoError(t, err)
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@aws-sdk", "client-kinesis-video-archived-media")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "npm ci:\n%s", out)
	}
	return dir
}

// TestKVSReadSideWithAWSJavaScriptSDK reads what was recorded with AWS's own clients:
// @aws-sdk/client-kinesis-video and @aws-sdk/client-kinesis-video-archived-media.
func TestKVSReadSideWithAWSJavaScriptSDK(t *testing.T) {
	sdk := awsSDKJS(t)
	c := start(t, Options{})
	numbers, first := recordClip(t, c, "js-cam")
	vc, err := c.ViewerConfig()
	require.NoError(t, err)
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	cmd := exec.Command("node", "kvs.js", c.KVSEndpoint(), c.Region(), vc.AccessKeyID, vc.SecretAccessKey, "js-cam",
		fmt.Sprintf("%.3f", float64(first-1000)/1000), fmt.Sprintf("%.3f", float64(first+60_000)/1000), clip)
	cmd.Dir = sdk
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "node kvs.js: %s\n%s", out, stderr.String())
	var got struct {
		Error     string
		Status    string
		Fragments []struct {
			Number               string
			Size, LengthMs       int64
			ProducerMs, ServerMs int64
		}
		FragmentListBytes       int
		FragmentListContentType string
		ClipContentType         string
		ClipBytes               int
		HlsURL                  string
		HlsMaster               string
		EmptyClipError          string
	}
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(out), &got), "%s", out)
	require.Empty(t, got.Error)
	require.Equal(t, "ACTIVE", got.Status)
	require.Len(t, got.Fragments, 3)
	for i, f := range got.Fragments {
		require.Equal(t, numbers[i], f.Number)
		require.InDelta(t, first+int64(2000*i), f.ProducerMs, 100)
		require.InDelta(t, 2000, f.LengthMs, 100)
	}
	require.Positive(t, got.FragmentListBytes)
	require.Equal(t, "video/mp4", got.ClipContentType)
	probeFrames(t, clip, 90)
	require.Contains(t, got.HlsMaster, "#EXT-X-STREAM-INF")
	require.Equal(t, "ResourceNotFoundException", got.EmptyClipError)
}
