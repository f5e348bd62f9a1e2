package main

import (
	"github.com/edgecam/edgecam/agent"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func newRunCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the agent (what the systemd service starts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, log, err := g.loadWithLogger(cmd, g.configPath)
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // nothing to do about a failed flush
			if l.File == "" {
				log.Warn("no configuration file; using defaults", zap.String("looked_for", g.configPath))
			}
			a, err := agent.New(agent.Options{Config: l.Config, Log: log, Version: version})
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			log.Info("edgecam starting", zap.String("version", version), zap.String("config", l.File))
			return a.Run(ctx)
		},
	}
}
