package localcloud

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/atomicfile"
)

// ConfigureAgent points an agent configuration at this localcloud: provisioning by claim,
// the credentials provider, KVS signaling and its STUN server, and loopback candidates for
// viewers on this machine. Start the cloud first.
func (c *Cloud) ConfigureAgent(cfg *config.Config) {
	p := c.paths
	cfg.AWS.Region = c.opts.Region
	cfg.IoT.Endpoint, cfg.IoT.CACert = c.MQTTEndpoint(), p.CA
	cfg.Provisioning.Enabled = true
	cfg.Provisioning.ClaimCert, cfg.Provisioning.ClaimKey = p.ClaimCert, p.ClaimKey
	cfg.Provisioning.Template = c.opts.Template
	cfg.Credentials.Endpoint, cfg.Credentials.RoleAlias = c.CredentialsEndpoint(), c.opts.RoleAliases[0]
	cfg.WebRTC.ControlPlane = c.KVSEndpoint()
	cfg.WebRTC.Loopback = true
	cfg.WebRTC.STUN = stunOrNone(c.STUNURL()) // localcloud's own: there is no Internet to ask
	// KVS streams (kvssink's CONTROL_PLANE_URI, the native uploader): the same listener.
	cfg.Recording.KVS.ControlPlaneURI = c.KVSEndpoint()
}

// AgentConfig returns an agent configuration (YAML) that provisions through this localcloud
// and keeps the device's state in stateDir. Only the keys that differ from the defaults are
// written; configs/edgecam.yaml documents them all.
func (c *Cloud) AgentConfig(stateDir string) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
	var cfg config.Config
	c.ConfigureAgent(&cfg)
	return fmt.Sprintf(`# Written by "edgecam localcloud": an agent configuration that provisions the device
# through this localcloud and fetches its AWS credentials from it.
#   edgecam run --config %[1]s
state_dir: %[2]s
aws:
  region: %[3]s
iot:
  endpoint: %[4]s
  ca_cert: %[5]s
provisioning:
  claim_cert: %[6]s
  claim_key: %[7]s
  template: %[8]s
credentials:
  endpoint: %[9]s
  role_alias: %[10]s
webrtc:
  control_plane: %[11]s
  # Viewers on this machine (the page at %[11]s/viewer/) need loopback candidates.
  loopback: true
  stun: %[12]s
recording:
  kvs:
    # KVS streams (control plane, PutMedia, the read side) are served by this localcloud.
    control_plane_uri: %[13]s
`, c.paths.AgentConfig, q(stateDir), cfg.AWS.Region, q(cfg.IoT.Endpoint), q(cfg.IoT.CACert), q(cfg.Provisioning.ClaimCert),
		q(cfg.Provisioning.ClaimKey), cfg.Provisioning.Template, q(cfg.Credentials.Endpoint), cfg.Credentials.RoleAlias,
		q(cfg.WebRTC.ControlPlane), q(cfg.WebRTC.STUN), q(cfg.Recording.KVS.ControlPlaneURI))
}

// WriteAgentConfig writes AgentConfig to DIR/edgecam.yaml unless that file exists already
// (it may have been edited). It reports whether it wrote the file.
func (c *Cloud) WriteAgentConfig(stateDir string) (bool, error) {
	if _, err := os.Stat(c.paths.AgentConfig); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if c.MQTTEndpoint() == "" {
		return false, errors.New("localcloud: start it before writing the agent configuration")
	}
	return true, atomicfile.Write(c.paths.AgentConfig, []byte(c.AgentConfig(stateDir)), 0o644)
}

func stunOrNone(url string) string {
	if url == "" {
		return "none"
	}
	return url
}
