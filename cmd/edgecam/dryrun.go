//go:build !nolocalcloud

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/edgecam/edgecam/agent"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/spf13/cobra"
)

// defaultClip is what dry-run plays when --video is not given (made by make testdata).
const defaultClip = "testdata/clips/ball-640x360-15fps-30s.mp4"

type dryRunFlags struct {
	video     string
	duration  time.Duration
	out       string
	recording string
}

func newDryRunCmd(g *globals) *cobra.Command {
	f := &dryRunFlags{}
	cmd := &cobra.Command{
		Use:   "dry-run",
		Short: "Run the whole agent locally on a test video, with no camera and no AWS account",
		Long: "dry-run plays a video file (--video, else the clip from make testdata, else a synthetic\n" +
			"test pattern) through the real pipeline and records it under --out. It reads a\n" +
			"configuration file only when --config is given. It runs for --duration, or until Ctrl-C.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd, g) },
	}
	cmd.Flags().StringVar(&f.video, "video", "", "H.264 video file to play (MP4, Matroska or MPEG-TS); loops")
	cmd.Flags().DurationVar(&f.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	cmd.Flags().StringVar(&f.out, "out", "out/dry-run", "directory for recordings and state")
	cmd.Flags().StringVar(&f.recording, "recording", config.RecordContinuous, "recording mode: continuous, motion (motion events only) or off")
	return cmd
}

func (f *dryRunFlags) run(cmd *cobra.Command, g *globals) error {
	out, err := filepath.Abs(f.out)
	if err != nil {
		return configError(fmt.Errorf("--out %s: %w", f.out, err))
	}
	video, err := f.pickVideo()
	if err != nil {
		return err
	}
	path := g.explicitConfig(cmd)
	// localcloud needs the log settings before the agent's configuration can point at it.
	pre, log, err := g.loadWithLogger(cmd, path)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", out, err)
	}
	cloud, err := startLocalcloud(cmd, localcloud.Options{Dir: filepath.Join(out, "localcloud"), TURN: true, Log: log.Named("localcloud")}, pre.Config, nil)
	if err != nil {
		return err
	}
	defer cloud.Close()

	l, err := g.loadFrom(cmd, path, func(c *config.Config) {
		c.StateDir = filepath.Join(out, "state")
		c.Recording.Mode = f.recording
		cloud.ConfigureAgent(c)
		c.Recording.Local = config.Local{Enabled: true, Dir: filepath.Join(out, "recordings"), Segment: 10 * time.Second, Format: c.Recording.Local.Format}
		dryRunKVS(c, cloud) // into localcloud's KVS through kvssink when it is built
		if c.Metrics.Listen == config.DefaultMetricsListen {
			c.Metrics.Listen = "127.0.0.1:0" // a free port, printed once it listens, as localcloud's are
		}
		if video != "" {
			c.Media.Source.Kind, c.Media.Source.Path, c.Media.Source.Loop = config.SourceFile, video, true
		} else {
			c.Media.Source.Kind = config.SourceTest
			c.Media.Source.Width, c.Media.Source.Height, c.Media.Source.Framerate = 640, 360, 15
		}
	})
	if err != nil {
		return err
	}
	cfg := l.Config
	var messages, events atomic.Int32 // every message; completed events ("end")
	if err := cloud.Observe("edgecam/+/events/motion", func(_ string, payload []byte) {
		var ev struct {
			Event, ThingName string
			Start            time.Time
			End              *time.Time
			PeakScore        float64
		}
		if json.Unmarshal(payload, &ev) != nil {
			return
		}
		messages.Add(1)
		if ev.Event == "end" {
			events.Add(1)
		}
		line := fmt.Sprintf("motion %s (broker): start %s", ev.Event, ev.Start.Format("15:04:05.000"))
		if ev.End != nil {
			line += ", end " + ev.End.Format("15:04:05.000")
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s, peak score %.2f\n", line, ev.PeakScore)
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}

	w := cmd.OutOrStdout()
	fmt.Fprintln(w, "edgecam dry-run")
	if video != "" {
		fmt.Fprintf(w, "  video:       %s (file, looping)\n", video)
	} else {
		fmt.Fprintf(w, "  video:       synthetic test pattern %dx%d at %d fps (encoded by media.encoder); run make testdata for the test clip\n",
			cfg.Media.Source.Width, cfg.Media.Source.Height, cfg.Media.Source.Framerate)
	}
	if cfg.Recording.KVS.Enabled {
		printKVSWhere(w, cfg, cloud, "")
	} else {
		fmt.Fprintf(w, "  recordings:  %s (%s segments of %s, %s; make kvssink to record into localcloud's KVS instead)\n", cfg.RecordingsDir(), cfg.Recording.Local.Format, cfg.Recording.Local.Segment, cfg.Recording.Mode)
	}
	fmt.Fprintf(w, "  state:       %s\n", cfg.StateDir)
	fmt.Fprintf(w, "  localcloud:  MQTT %s, credentials %s, KVS signaling %s (files in %s)\n", cloud.MQTTEndpoint(), cloud.CredentialsEndpoint(), cloud.KVSEndpoint(), filepath.Join(out, "localcloud"))
	if cfg.WebRTC.Enabled {
		fmt.Fprintf(w, "  live view:   open %s/viewer/ in a browser\n", cloud.KVSEndpoint())
	}
	if f.duration > 0 {
		fmt.Fprintf(w, "  duration:    %s (Ctrl-C stops earlier)\n", f.duration)
	} else {
		fmt.Fprintln(w, "  duration:    until Ctrl-C")
	}

	a, err := agent.New(agent.Options{Config: cfg, Log: log, Version: version, RequireCloud: cfg.IoT.Endpoint != ""})
	if err != nil {
		return err
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	go printMetricsURL(ctx, w, a)
	runErr := a.Run(ctx)

	if thing := a.Thing(); thing != "" {
		fmt.Fprintf(w, "dry-run: device provisioned through localcloud as %s (identity in %s)\n", thing, cfg.StateDir)
	}
	fmt.Fprintf(w, "dry-run: %d motion events (%d messages) received on the broker\n", events.Load(), messages.Load())
	if cfg.Recording.KVS.Enabled {
		printKVSWhere(w, cfg, cloud, a.Thing())
		if stream := cfg.Recording.KVS.StreamName; stream != "" {
			printKVSResult(w, cloud, stream)
		} else if a.Thing() != "" {
			printKVSResult(w, cloud, a.Thing())
		}
	}
	files := a.Recordings()
	fmt.Fprintf(w, "dry-run: %d frames captured, %d segments in %s\n", a.Frames(), len(files), cfg.RecordingsDir())
	for _, file := range files {
		fmt.Fprintf(w, "  %s\n", file)
	}
	return runErr
}

// pickVideo returns the file to play: --video, else the generated clip, else "" (test pattern).
func (f *dryRunFlags) pickVideo() (string, error) {
	if f.video != "" {
		p, err := filepath.Abs(f.video)
		if err != nil {
			return "", configError(fmt.Errorf("--video %s: %w", f.video, err))
		}
		if _, err := os.Stat(p); err != nil {
			return "", configError(fmt.Errorf("--video: %w", err))
		}
		return p, nil
	}
	if p, err := filepath.Abs(defaultClip); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", nil
}

// printMetricsURL prints where the agent serves metrics once it listens (dry-run).
func printMetricsURL(ctx context.Context, w io.Writer, a *agent.Agent) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if addr := a.MetricsAddr(); addr != "" {
			fmt.Fprintf(w, "  metrics:     http://%s/metrics (and /healthz, /readyz)\n", addr)
			return
		}
	}
}
