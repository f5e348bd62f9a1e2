package main

import (
	"fmt"
	"os"

	"github.com/edgecam/edgecam/motioneval"
	"github.com/spf13/cobra"
)

func newMotionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "motion", Short: "Motion detection tools"}
	var video, labels, svg string
	eval := &cobra.Command{
		Use:   "eval",
		Short: "Run motion detection on a video file: events, precision/recall, bytes saved, a score timeline",
		Long: "eval decodes --video faster than real time through the same analysis pipeline as the agent,\n" +
			"runs the detector and the gate with the configuration's motion settings (--config), and\n" +
			"prints the events, precision and recall against --labels (a clip's JSON sidecar or a list of\n" +
			"{start, end} in seconds), and the bytes a continuous recording would keep against a\n" +
			"motion-gated one. --svg draws the score timeline with the threshold and the events.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if video == "" {
				return configError(fmt.Errorf("--video is required"))
			}
			if _, err := os.Stat(video); err != nil {
				return configError(fmt.Errorf("--video: %w", err))
			}
			l, err := g.loadFrom(cmd, g.explicitConfig(cmd), nil)
			if err != nil {
				return err
			}
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
			r.WriteText(cmd.OutOrStdout())
			if svg != "" {
				f, err := os.Create(svg)
				if err != nil {
					return fmt.Errorf("--svg: %w", err)
				}
				if err := r.WriteSVG(f); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "timeline: %s\n", svg)
			}
			return nil
		},
	}
	eval.Flags().StringVar(&video, "video", "", "video file (MP4, Matroska, MPEG-TS with H.264)")
	eval.Flags().StringVar(&labels, "labels", "", "labelled motion intervals (JSON)")
	eval.Flags().StringVar(&svg, "svg", "", "write the score timeline here (SVG)")
	cmd.AddCommand(eval)
	return cmd
}
