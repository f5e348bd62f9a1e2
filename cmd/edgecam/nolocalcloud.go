//go:build nolocalcloud

package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// The device build (make deb: go build -tags nolocalcloud) leaves localcloud out, and with
// it the commands that run it: its MQTT broker, KVS and servers are linked into the binary
// and initialised at start-up (tables, patterns), about 2 MB of the agent's RSS it would
// never use on a camera.

// errNoLocalcloud says where the left-out commands are.
var errNoLocalcloud = errors.New("not in this build: the device package leaves localcloud out to save memory; " +
	"run it from a development build (make build, or go build ./cmd/edgecam)")

func newDryRunCmd(*globals) *cobra.Command {
	return notInThisBuild("dry-run", "Run the agent against an in-process localcloud (not in the device build)")
}

func newLocalcloudCmd(*globals) *cobra.Command {
	return notInThisBuild("localcloud", "Run localcloud, the local stand-in for AWS (not in the device build)")
}

// notInThisBuild is a command that explains that it was left out, whatever its arguments.
func notInThisBuild(name, short string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return configError(fmt.Errorf("edgecam %s: %w", name, errNoLocalcloud))
		},
	}
}
