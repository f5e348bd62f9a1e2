package main

import (
	"fmt"
	"runtime"

	"github.com/edgecam/edgecam/media/gst"
	"github.com/spf13/cobra"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = "unknown"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and GStreamer runtime version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "edgecam %s\n", version)
			fmt.Fprintf(w, "commit:    %s\n", commit)
			fmt.Fprintf(w, "go:        %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			fmt.Fprintf(w, "gstreamer: %s\n", gst.Version())
			return nil
		},
	}
}
