package localcloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/edgecam/edgecam/internal/atomicfile"
)

// ViewerConfig is DIR/viewer.json: what a KVS viewer client (AWS's KVS WebRTC SDK for
// JavaScript and its test page, or any other) needs to watch a camera through localcloud
// exactly as on AWS: a region, a channel, the control plane's URL and a long-term key pair
// that localcloud accepts.
type ViewerConfig struct {
	Region          string `json:"region"`
	ChannelName     string `json:"channelName"`
	ControlPlaneURL string `json:"controlPlaneUrl"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
}

// loadViewerKey returns the key pair kept in path, or makes a new one when there is none.
func loadViewerKey(path string) (accessKeyID, secret string, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		var vc ViewerConfig
		if err := json.Unmarshal(data, &vc); err != nil {
			return "", "", fmt.Errorf("%s: %w (delete it to get a new key pair)", path, err)
		}
		if vc.AccessKeyID != "" && vc.SecretAccessKey != "" {
			return vc.AccessKeyID, vc.SecretAccessKey, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	return "AKIA" + randomUpper(16), randomBase64(30), nil
}

// writeViewerConfig writes the file (0600: it holds a secret key).
func writeViewerConfig(path string, vc ViewerConfig) error {
	data, err := json.MarshalIndent(vc, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}
