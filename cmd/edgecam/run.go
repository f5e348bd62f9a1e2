package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/edgecam/edgecam/agent"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/logging"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func newRunCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the agent (what the systemd service starts); SIGHUP reloads the configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.loadFrom(cmd, g.configPath, nil)
			if err != nil {
				return err
			}
			// The level is the reloadable part of the logger: log.level changes live.
			level := zap.NewAtomicLevel()
			out, _ := cmd.ErrOrStderr().(*os.File)
			log, err := logging.New(logging.Options{Level: l.Log.Level, Format: l.Log.Format, Output: out, LevelVar: &level})
			if err != nil {
				return configError(err)
			}
			defer log.Sync() //nolint:errcheck // nothing to do about a failed flush
			// Under systemd, a crash report (panic, fatal error) is a critical record too.
			if _, err := logging.JournalCrashOutput(filepath.Base(os.Args[0])); err != nil {
				log.Warn("a crash report would reach the journal without its priority", zap.Error(err))
			}
			if l.File == "" {
				log.Warn("no configuration file; using defaults", zap.String("looked_for", g.configPath))
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			reloads := reloadSignals(ctx)
			log.Info("edgecam starting", zap.String("version", version), zap.String("config", l.File), zap.Int("pid", os.Getpid()))
			return agent.RunService(ctx, agent.ServiceOptions{
				Options: agent.Options{Config: l.Config, Log: log, Version: version},
				Load: func() (config.Config, error) {
					nl, err := g.loadFrom(cmd, g.configPath, nil)
					if err != nil {
						return config.Config{}, err
					}
					return nl.Config, nil
				},
				Reloads:  reloads,
				LogLevel: &level,
			})
		},
	}
}

// reloadSignals delivers one value for each SIGHUP (systemctl reload) until ctx ends.
func reloadSignals(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	out := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case out <- struct{}{}:
				default: // a reload is pending: it reads the newest file
				}
			}
		}
	}()
	return out
}
