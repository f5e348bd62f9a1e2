// Command edgecam is the edge camera agent: it provisions the device, captures H.264,
// records it and serves live viewers. Run "edgecam --help" for its commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/logging"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
)

// Exit codes: systemd's unit does not restart on exitConfig, which needs a human. It is
// sysexits' EX_CONFIG (78), not 2: the Go runtime exits with 2 when the agent panics or dies
// of a fatal error, and such a crash must be restarted.
const (
	exitOK      = 0
	exitFailure = 1
	exitConfig  = 78
)

func main() {
	// A camera has little memory and the agent allocates little per frame: the heap may
	// grow by half, not Go's default whole, before a collection (measured relaying an RTSP
	// camera: 43.5 against 45.1 MB RSS with 1 viewer, 55.6 against 61.0 MB with 5, CPU the
	// same within noise). GOGC in the environment (the unit, a user) still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	limitMallocArenas()
	runtime.MemProfileRate = memProfileRate(os.Getenv("GODEBUG"))
	os.Exit(execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// memProfileRate is the heap profile's sampling rate for the process: none, unless GODEBUG
// sets one (memprofilerate=N). Once a few hundred call stacks are sampled, Go's bucket hash
// of the heap profile (1.4 MB) is mostly resident: 1.1 MB of a relaying agent's RSS, for a
// profile that only metrics.pprof serves; the agent turns sampling on when it serves it.
func memProfileRate(godebug string) int {
	for kv := range strings.SplitSeq(godebug, ",") {
		if k, v, _ := strings.Cut(kv, "="); k == "memprofilerate" {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return 0
}

// exitError carries an exit code with an error already worth showing to the user.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func configError(err error) error { return &exitError{code: exitConfig, err: err} }

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, g := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	// Here rather than in a post-run hook, which cobra skips when the command fails: a
	// failing run is when a profile is wanted most.
	g.stopProfile()
	if err == nil {
		return exitOK
	}
	// Under systemd, with the error priority on each line: journalctl -p err shows why it stopped.
	_ = logging.Fprintln(stderr, zap.ErrorLevel, "edgecam:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

// globals are the flags every command shares.
type globals struct {
	configPath string
	cpuProfile string
	profile    *os.File
	flags      *pflag.FlagSet
}

func (g *globals) startProfile() error {
	if g.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(g.cpuProfile)
	if err != nil {
		return configError(fmt.Errorf("--cpu-profile: %w", err))
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	g.profile = f
	return nil
}

func (g *globals) stopProfile() {
	if g.profile != nil {
		pprof.StopCPUProfile()
		g.profile.Close()
		g.profile = nil
	}
}

func newRoot(stdout, stderr io.Writer) (*cobra.Command, *globals) {
	g := &globals{}
	root := &cobra.Command{
		Use:           "edgecam",
		Short:         "Edge camera agent: provisioning, H.264 capture, recording, live view, motion",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configPath, "config", "c", config.DefaultPath, "configuration file (YAML)")
	pf.String("state-dir", "", "state directory (state_dir)")
	pf.String("log-level", "", "log level: debug, info, warn, error (log.level)")
	pf.String("log-format", "", "log format: auto, console, json (log.format)")
	pf.StringVar(&g.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the command to this file (go tool pprof reads it)")
	g.flags = pf
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return g.startProfile() }

	root.AddCommand(newRunCmd(g), newDryRunCmd(g), newProvisionCmd(g), newLocalcloudCmd(g), newDevicesCmd(), newMotionCmd(g), newConfigCmd(g), newVersionCmd())
	return root, g
}

// load reads the configuration the way every command does: file, environment, flags.
func (g *globals) load(cmd *cobra.Command, adjust func(*config.Config)) (*config.Loaded, error) {
	return g.loadFrom(cmd, g.configPath, adjust)
}

// explicitConfig is the --config file when one was named, else "": for commands that run
// on their own defaults rather than the device's /etc/edgecam/edgecam.yaml.
func (g *globals) explicitConfig(cmd *cobra.Command) string {
	if cmd.Flags().Changed("config") {
		return g.configPath
	}
	return ""
}

func (g *globals) loadFrom(cmd *cobra.Command, path string, adjust func(*config.Config)) (*config.Loaded, error) {
	l, err := config.Load(config.LoadOptions{
		Path:     path,
		Required: cmd.Flags().Changed("config"),
		Flags: map[string]*pflag.Flag{
			"state_dir":  g.flags.Lookup("state-dir"),
			"log.level":  g.flags.Lookup("log-level"),
			"log.format": g.flags.Lookup("log-format"),
		},
		Adjust: adjust,
	})
	if err != nil {
		return nil, configError(err)
	}
	return l, nil
}

// loadWithLogger loads the configuration from path and builds the logger it asks for; the
// caller syncs the logger when it is done.
func (g *globals) loadWithLogger(cmd *cobra.Command, path string) (*config.Loaded, *zap.Logger, error) {
	l, err := g.loadFrom(cmd, path, nil)
	if err != nil {
		return nil, nil, err
	}
	log, err := newLogger(l.Config, cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	return l, log, nil
}

func newLogger(cfg config.Config, stderr io.Writer) (*zap.Logger, error) {
	out, _ := stderr.(*os.File)
	log, err := logging.New(logging.Options{Level: cfg.Log.Level, Format: cfg.Log.Format, Output: out})
	if err != nil {
		return nil, configError(err)
	}
	return log, nil
}

// signalContext ends on SIGINT or SIGTERM. After the first signal, a second one kills the
// process at once, in case a clean stop hangs.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}
