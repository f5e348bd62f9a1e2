// Command soak runs the edgecam agent binary for a long time against an in-process
// localcloud with viewers, motion, credential rotation and a localcloud restart, samples
// it, and writes samples.csv, soak.svg and verdict.txt (internal/soak). It exits 1 when the
// verdict is FAIL, 2 when the soak could not run. make soak runs it.
//
// usage: go run ./scripts/soak -agent bin/edgecam -duration 30m -out out/soak
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edgecam/edgecam/internal/soak"
	"github.com/edgecam/edgecam/internal/testclip"
)

func main() {
	var o soak.Options
	flag.StringVar(&o.Agent, "agent", "bin/edgecam", "the edgecam binary to run (make build)")
	flag.StringVar(&o.Clip, "clip", "", "H.264 clip with motion, looped (default: the ball clip of make testdata, generated when missing)")
	flag.StringVar(&o.Out, "out", "out/soak", "output directory (samples.csv, soak.svg, verdict.txt, agent.log; work/ holds state)")
	flag.DurationVar(&o.Duration, "duration", 30*time.Minute, "how long the agent runs")
	flag.DurationVar(&o.Interval, "interval", 10*time.Second, "sampling interval")
	flag.DurationVar(&o.ViewerEvery, "viewer-every", time.Minute, "viewers leave and new ones (1 to 3) join this often")
	flag.DurationVar(&o.CredentialLifetime, "credential-lifetime", 5*time.Minute, "lifetime of the AWS credentials localcloud issues")
	flag.DurationVar(&o.RefreshBefore, "refresh-before", time.Minute, "the agent's credentials.refresh_before")
	flag.DurationVar(&o.RestartAt, "restart-at", 0, "when localcloud restarts (0: half-way; negative: never)")
	flag.DurationVar(&o.RestartDown, "restart-down", 10*time.Second, "how long localcloud stays down")
	flag.StringVar(&o.Recording, "recording", "motion", "recording mode: motion or continuous")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "soak: unexpected arguments %v (flags only; -h lists them)\n", flag.Args())
		os.Exit(2)
	}
	if o.Clip == "" {
		clip, _, err := testclip.Load(testclip.Ball)
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			os.Exit(2)
		}
		o.Clip = clip
	}
	o.Progress = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := soak.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	data, err := os.ReadFile(res.VerdictFile)
	if err == nil {
		fmt.Print(string(data))
	}
	fmt.Printf("samples: %s\nplot:    %s\nverdict: %s\nagent log: %s\n", res.CSV, res.SVG, res.VerdictFile, res.AgentLog)
	if !res.Verdict.Pass {
		os.Exit(1)
	}
}
