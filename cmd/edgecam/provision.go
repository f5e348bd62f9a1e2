package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgecam/edgecam/agent"
	"github.com/edgecam/edgecam/iot"
	"github.com/spf13/cobra"
)

func newProvisionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "provision",
		Short: "Provision the device by claim once (factory line or first boot); a no-op when already provisioned",
		Long: "provision runs AWS IoT fleet provisioning by claim with the claim certificate\n" +
			"(provisioning.claim_cert), stores the device's own certificate and key in the state\n" +
			"directory, and proves the new certificate by connecting with it. It exits 0 when the\n" +
			"device is provisioned; a second run does nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, log, err := g.loadWithLogger(cmd, g.configPath)
			if err != nil {
				return err
			}
			if l.IoT.Endpoint == "" {
				return configError(errors.New("iot.endpoint is not set: name the AWS IoT endpoint to provision against"))
			}
			defer log.Sync() //nolint:errcheck // nothing to do about a failed flush
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			id, fresh, err := agent.EnsureIdentity(ctx, l.Config, log)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if !fresh {
				fmt.Fprintf(w, "already provisioned as %s (certificate %s); nothing to do\n", id.ThingName, id.CertificateID)
				return nil
			}
			conn, err := agent.ConnectDevice(ctx, l.Config, id, iot.Options{ConnectTimeout: l.Provisioning.Timeout}, log)
			if err != nil {
				return fmt.Errorf("provisioned as %s, but the new certificate does not connect: %w", id.ThingName, err)
			}
			closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = conn.Close(closeCtx)
			fmt.Fprintf(w, "provisioned as %s (certificate %s); connected to %s with the new certificate\n", id.ThingName, id.CertificateID, l.IoT.Endpoint)
			fmt.Fprintf(w, "identity stored in %s\n", l.StateDir)
			return nil
		},
	}
}
