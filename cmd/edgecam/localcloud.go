//go:build !nolocalcloud

package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/edgecam/edgecam/agent"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

type localcloudFlags struct {
	dir             string
	host            string
	mqttPort        int
	credentialsPort int
	kvsPort         int
	turnPort        int
	noTURN          bool
	allow           []string
	lifetime        time.Duration
}

func newLocalcloudCmd(g *globals) *cobra.Command {
	f := &localcloudFlags{}
	cmd := &cobra.Command{
		Use:   "localcloud",
		Short: "Run local stand-ins for AWS IoT (fleet provisioning broker, credentials provider)",
		Long: "localcloud serves, on 127.0.0.1 by default, an MQTT 5 broker with AWS IoT's fleet\n" +
			"provisioning API and an AWS IoT credentials provider. On first use it creates in --dir\n" +
			"a CA, a claim certificate, a device allow-list (with this machine's serial) and an\n" +
			"agent configuration, edgecam.yaml, pointing at itself:\n" +
			"  edgecam localcloud --dir /tmp/lc &\n" +
			"  edgecam run --config /tmp/lc/edgecam.yaml",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd, g) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "localcloud", "directory for the CA, claim certificate, allow-list, registry and agent configuration")
	fl.StringVar(&f.host, "host", "127.0.0.1", "address to listen on")
	fl.IntVar(&f.mqttPort, "mqtt-port", localcloud.DefaultMQTTPort, "MQTT (TLS) port")
	fl.IntVar(&f.credentialsPort, "credentials-port", localcloud.DefaultCredentialsPort, "credentials provider (HTTPS) port")
	fl.IntVar(&f.kvsPort, "kvs-port", localcloud.DefaultKVSPort, "KVS signaling control plane, WebSocket and viewer page (HTTP and HTTPS) port")
	fl.IntVar(&f.turnPort, "turn-port", localcloud.DefaultTURNPort, "TURN and STUN (UDP) port")
	fl.BoolVar(&f.noTURN, "no-turn", false, "do not run the TURN server")
	fl.StringSliceVar(&f.allow, "allow", nil, "serial numbers allowed to provision (this machine's is always added)")
	fl.DurationVar(&f.lifetime, "credential-lifetime", time.Hour, "lifetime of issued AWS credentials (AWS: 15m to 12h)")
	cmd.AddCommand(newLoadtestCmd(g))
	return cmd
}

func (f *localcloudFlags) run(cmd *cobra.Command, g *globals) error {
	l, log, err := g.loadWithLogger(cmd, "")
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush
	dir, err := filepath.Abs(f.dir)
	if err != nil {
		return configError(err)
	}
	if f.lifetime < 15*time.Minute || f.lifetime > 12*time.Hour {
		return configError(fmt.Errorf("--credential-lifetime %s: use 15m to 12h, as AWS allows", f.lifetime))
	}
	cloud, err := startLocalcloud(cmd, localcloud.Options{
		Dir: dir, Host: f.host, MQTTPort: f.mqttPort, CredentialsPort: f.credentialsPort, KVSPort: f.kvsPort, TURN: !f.noTURN, TURNPort: f.turnPort,
		CredentialLifetime: f.lifetime, Log: log.Named("localcloud"),
	}, l.Config, f.allow)
	if err != nil {
		return err
	}
	defer cloud.Close()
	wrote, err := cloud.WriteAgentConfig(cloud.Paths().AgentStateDir)
	if err != nil {
		return err
	}
	p := cloud.Paths()
	w := cmd.OutOrStdout()
	fmt.Fprintln(w, "edgecam localcloud")
	fmt.Fprintf(w, "  MQTT (AWS IoT Core, fleet provisioning): %s\n", cloud.MQTTEndpoint())
	fmt.Fprintf(w, "  credentials provider:                     https://%s/role-aliases/%s/credentials\n", cloud.CredentialsEndpoint(), cloud.RoleAlias())
	fmt.Fprintf(w, "  KVS signaling (control plane, WebSocket): %s\n", cloud.KVSEndpoint())
	fmt.Fprintf(w, "  live view page:                           %s/viewer/\n", cloud.KVSEndpoint())
	fmt.Fprintf(w, "  recordings page:                          %s/viewer/recordings.html\n", cloud.KVSEndpoint())
	fmt.Fprintf(w, "  KVS streams (control plane, PutMedia):    %s (kvssink: CONTROL_PLANE_URI=%s)\n", cloud.KVSEndpoint(), cloud.KVSEndpoint())
	fmt.Fprintf(w, "  KVS stream counters (bytes ingested…):    %s/kvs/streams/ and …/kvs/streams/<name>/stats\n", cloud.KVSEndpoint())
	fmt.Fprintf(w, "  KVS fragments on disk:                    %s\n", p.KVSData)
	if stun := cloud.STUNURL(); stun != "" {
		fmt.Fprintf(w, "  TURN and STUN (UDP):                      %s\n", stun[len("stun:"):])
	}
	fmt.Fprintf(w, "  viewer key pair for KVS viewer clients:   %s\n", cloud.ViewerConfigPath())
	fmt.Fprintf(w, "  CA certificate:                           %s\n", p.CA)
	fmt.Fprintf(w, "  claim certificate and key:                %s, %s\n", p.ClaimCert, p.ClaimKey)
	fmt.Fprintf(w, "  device allow-list:                        %s\n", p.AllowList)
	state := "kept as it was"
	if wrote {
		state = "written"
	}
	fmt.Fprintf(w, "  agent configuration (%s):           %s\n", state, p.AgentConfig)
	fmt.Fprintf(w, "try: edgecam run --config %s\n", p.AgentConfig)

	ctx, stop := signalContext(cmd.Context())
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(w, "localcloud stopped")
	return nil
}

// startLocalcloud opens and starts a localcloud that allows this machine's serial, prints
// the devices' status messages to the log, and stops when the command's context ends.
func startLocalcloud(cmd *cobra.Command, opts localcloud.Options, cfg config.Config, allow []string) (*localcloud.Cloud, error) {
	if serial, err := agent.Serial(cfg); err == nil {
		allow = append(allow, serial)
	}
	cloud, err := localcloud.Open(opts)
	if err != nil {
		return nil, err
	}
	for _, s := range allow {
		if err := cloud.Allow(s); err != nil {
			return nil, err
		}
	}
	if err := cloud.Start(cmd.Context()); err != nil {
		return nil, err
	}
	log := opts.Log
	if err := cloud.Observe("edgecam/+/status", func(topic string, payload []byte) {
		log.Info("device status", zap.String("topic", topic), zap.ByteString("payload", payload))
	}); err != nil {
		cloud.Close()
		return nil, err
	}
	return cloud, nil
}
