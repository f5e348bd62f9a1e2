package localcloud

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/edgecam/edgecam/internal/atomicfile"
)

// AgentConfig returns an agent configuration (YAML) that provisions through this localcloud
// and keeps the device's state in stateDir. Only the keys that differ from the defaults are
// written; configs/edgecam.yaml documents them all.
func (c *Cloud) AgentConfig(stateDir string) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
	p := c.paths
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
`, p.AgentConfig, q(stateDir), c.opts.Region, q(c.MQTTEndpoint()), q(p.CA), q(p.ClaimCert), q(p.ClaimKey),
		c.opts.Template, q(c.CredentialsEndpoint()), c.opts.RoleAliases[0], q(c.KVSEndpoint()), q(stunOrNone(c.STUNURL())))
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
