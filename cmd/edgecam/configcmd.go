package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or check the configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (file, environment and flags over defaults) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.load(cmd, nil)
			if err != nil {
				return err
			}
			out, err := l.YAML()
			if err != nil {
				return err
			}
			if l.File != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "# from %s, environment and flags\n", l.File)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "# no file at %s: defaults, environment and flags\n", g.configPath)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}, &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration and report every problem with its key; exit 2 when invalid",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.load(cmd, nil)
			if err != nil {
				return err
			}
			src := l.File
			if src == "" {
				src = "defaults (no file at " + g.configPath + ")"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "configuration OK: %s\n", src)
			return nil
		},
	})
	return cmd
}
