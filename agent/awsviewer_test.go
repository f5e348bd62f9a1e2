package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/internal/webrtcviewer"
	"github.com/edgecam/edgecam/signaling"
	pion "github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// kvsJS installs (once, under a lock) AWS's KVS WebRTC SDK for JavaScript from the npm
// registry into testdata/kvsjs and returns that directory.
func kvsJS(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/install-deps.sh")
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "kvsjs"))
	require.NoError(t, err)
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "amazon-kinesis-video-streams-webrtc")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "npm ci:\n%s", out)
	}
	return dir
}

type jsOutcome struct {
	Answer *struct {
		Type string `json:"type"`
		SDP  string `json:"sdp"`
	} `json:"answer"`
	Candidates []pion.ICECandidateInit `json:"candidates"`
	Error      string                  `json:"error"`
}

// TestAWSJavaScriptViewerSDK signals with AWS's own KVS WebRTC SDK for JavaScript as the
// viewer (its SigV4 presigned wss:// connection and message format) through localcloud to
// the agent, then plays the camera's answer in a pion viewer: media flow.
func TestAWSJavaScriptViewerSDK(t *testing.T) {
	sdk := kvsJS(t)
	cloud, a := liveAgent(t, nil)
	vc, err := cloud.ViewerConfig()
	require.NoError(t, err)
	client, err := signaling.NewClient(signaling.ClientOptions{
		Region: vc.Region, Endpoint: cloud.KVSTLSEndpoint(), DisableSTUN: true,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cloud.CAPool()}}},
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey}, nil
		}),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := client.DescribeChannel(ctx, liveThing)
	require.NoError(t, err)
	eps, err := client.Endpoints(ctx, ch.ARN, signaling.RoleViewer)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(eps.WSS, "wss://"), "AWS's JS client takes only wss:// endpoints: %s", eps.WSS)

	v, err := webrtcviewer.New(webrtcviewer.Options{IncludeLoopback: true})
	require.NoError(t, err)
	defer v.Close()
	offer, err := v.Offer()
	require.NoError(t, err)
	target, err := json.Marshal(map[string]string{
		"channelARN": ch.ARN, "wssEndpoint": eps.WSS, "clientId": "aws-js-viewer", "region": vc.Region,
		"accessKeyId": vc.AccessKeyID, "secretAccessKey": vc.SecretAccessKey, "offer": offer,
	})
	require.NoError(t, err)
	targetPath := filepath.Join(t.TempDir(), "target.json")
	require.NoError(t, os.WriteFile(targetPath, target, 0o600))

	cmd := exec.CommandContext(ctx, "node", "viewer.js", targetPath)
	cmd.Dir = sdk
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+cloud.Paths().CA)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "node viewer.js: %s\n%s", out, stderr.String())
	var res jsOutcome
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(out), &res), "%s", out)
	require.Empty(t, res.Error)
	require.NotNil(t, res.Answer)
	require.Equal(t, "answer", res.Answer.Type)
	require.Contains(t, res.Answer.SDP, "H264/90000")
	require.NotEmpty(t, res.Candidates, "the camera trickled its candidates through the SDK")

	require.NoError(t, v.SetAnswer(res.Answer.SDP))
	for _, c := range res.Candidates {
		require.NoError(t, v.AddCandidate(c))
	}
	select {
	case f := <-v.Frames():
		require.True(t, f.Keyframe)
	case <-time.After(15 * time.Second):
		t.Fatal("no video after signaling with AWS's SDK")
	}
	require.Equal(t, 1, a.WebRTC().Viewers())
}
