package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgecam/edgecam/motioneval"
	"github.com/spf13/cobra"
)

func newMotionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "motion", Short: "Motion detection tools"}
	var video, labels, svg, suite string
	var asJSON bool
	eval := &cobra.Command{
		Use:   "eval",
		Short: "Run motion detection on a video file or a folder of clips: events, latency, precision/recall, bytes saved, a score timeline",
		Long: "eval decodes --video faster than real time through the same analysis pipeline as the agent,\n" +
			"runs the detector and the gate with the configuration's motion settings (--config), and\n" +
			"prints the events with their latency and moving regions, precision and recall against --labels\n" +
			"(a clip's JSON sidecar {\"motion\": [{\"start\": 5, \"end\": 9}]} or {\"motion\": [[5, 9]]}, or a bare\n" +
			"list of either, in seconds) per event and per analysed frame (with the false-positive rate),\n" +
			"the time recorded outside the labels, and the bytes a continuous recording would keep against a\n" +
			"motion-gated one. An event longer than 90% of the video is flagged: gating saved nothing.\n" +
			"--suite DIR evaluates every video of a folder (labels from NAME.json next to NAME.mp4) and prints\n" +
			"one table. --json prints the same for scripts. --svg draws the score timeline (with --suite: a\n" +
			"folder that gets one SVG per clip).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case video == "" && suite == "":
				return configError(fmt.Errorf("--video or --suite is required"))
			case video != "" && suite != "":
				return configError(fmt.Errorf("--video and --suite exclude each other: evaluate one file or one folder"))
			case suite != "" && labels != "":
				return configError(fmt.Errorf("--labels is for --video; with --suite each clip's labels come from its NAME.json sidecar"))
			}
			if video != "" {
				if _, err := os.Stat(video); err != nil {
					return configError(fmt.Errorf("--video: %w", err))
				}
			}
			if suite != "" {
				if fi, err := os.Stat(suite); err != nil || !fi.IsDir() {
					return configError(fmt.Errorf("--suite %s: not a folder of clips", suite))
				}
			}
			l, err := g.loadFrom(cmd, g.explicitConfig(cmd), nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var reports []*motioneval.Report
			if suite != "" {
				if _, err := motioneval.FindSuite(suite); err != nil {
					return configError(fmt.Errorf("--suite: %w", err))
				}
				reports, err = motioneval.RunSuite(cmd.Context(), motioneval.Options{Config: l.Config}, suite)
				if err != nil {
					return err
				}
			} else {
				var ls []motioneval.Interval
				if labels != "" {
					if ls, err = motioneval.ReadLabels(labels); err != nil {
						return configError(err)
					}
				}
				r, err := motioneval.Run(cmd.Context(), motioneval.Options{Video: video, Config: l.Config}, ls)
				if err != nil {
					return err
				}
				reports = []*motioneval.Report{r}
			}
			switch {
			case asJSON:
				if err := motioneval.WriteJSON(out, reports); err != nil {
					return err
				}
			case suite != "":
				motioneval.WriteSuiteTable(out, reports)
			default:
				reports[0].WriteText(out)
			}
			if svg == "" {
				return nil
			}
			if suite != "" {
				if err := os.MkdirAll(svg, 0o755); err != nil {
					return fmt.Errorf("--svg: %w", err)
				}
			}
			for _, r := range reports {
				path := svg
				if suite != "" {
					base := filepath.Base(r.Video)
					path = filepath.Join(svg, strings.TrimSuffix(base, filepath.Ext(base))+".svg")
				}
				if err := writeSVG(r, path); err != nil {
					return err
				}
				if !asJSON {
					fmt.Fprintf(out, "timeline: %s\n", path)
				}
			}
			return nil
		},
	}
	eval.Flags().StringVar(&video, "video", "", "video file (MP4, Matroska, MPEG-TS with H.264)")
	eval.Flags().StringVar(&labels, "labels", "", "labelled motion intervals (JSON)")
	eval.Flags().StringVar(&suite, "suite", "", "evaluate every video of this folder, labels from NAME.json sidecars")
	eval.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON (per clip: events with start, end, latency; frame precision/recall/FP rate; bytes kept)")
	eval.Flags().StringVar(&svg, "svg", "", "write the score timeline here (SVG; with --suite a folder)")
	cmd.AddCommand(eval)
	return cmd
}

// writeSVG writes r's timeline to path.
func writeSVG(r *motioneval.Report, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	if err := r.WriteSVG(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
