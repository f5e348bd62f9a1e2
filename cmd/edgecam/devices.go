package main

import (
	"github.com/edgecam/edgecam/media/devices"
	"github.com/spf13/cobra"
)

func newDevicesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "devices",
		Short: "List the cameras this machine has (V4L2, libcamera) with their formats, sizes and frame rates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			devices.Write(cmd.OutOrStdout(), devices.List())
			return nil
		},
	}
}
