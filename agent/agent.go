// Package agent runs edgecam: it wires the capture pipeline, the Hub and the recorders,
// supervises them, and stops them cleanly so that the last recording is finalised.
package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Agent is one running edgecam.
type Agent struct {
	cfg config.Config
	log *zap.Logger
	hub *media.Hub

	source   *media.Source
	recorder *media.SegmentRecorder
}

// New checks the configuration against what this machine can run and builds the agent.
func New(cfg config.Config, log *zap.Logger) (*Agent, error) {
	if log == nil {
		log = zap.NewNop()
	}
	desc, err := media.SourceDescription(cfg.Media.Source, cfg.Media.Encoder)
	if err != nil {
		return nil, err
	}
	hub := media.NewHub(media.HubOptions{
		PreRoll:     cfg.Media.Hub.PreRoll,
		MaxBytes:    int(cfg.Media.Hub.PreRollMaxBytes),
		QueueFrames: cfg.Media.Hub.QueueFrames,
	})
	a := &Agent{cfg: cfg, log: log, hub: hub}
	a.source = media.NewSource(media.SourceOptions{
		Description: desc,
		Loop:        cfg.Media.Source.Kind == config.SourceFile && cfg.Media.Source.Loop,
		Hub:         hub,
		Log:         log.Named("source"),
	})
	if cfg.Recording.Mode != config.RecordOff && cfg.Recording.Local.Enabled {
		a.recorder, err = media.NewSegmentRecorder(media.SegmentOptions{
			Dir:     cfg.RecordingsDir(),
			Segment: cfg.Recording.Local.Segment,
			Format:  cfg.Recording.Local.Format,
			Log:     log.Named("recorder"),
		})
		if err != nil {
			return nil, err
		}
	}
	log.Debug("capture pipeline", zap.String("description", desc))
	return a, nil
}

// Hub returns the agent's frame hub.
func (a *Agent) Hub() *media.Hub { return a.hub }

// Run runs until ctx ends or the video source ends, then stops every part, finalising
// recordings. It returns nil on a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	// Subscribe before the source starts, so that the recording begins with its first frame.
	var recSub *media.Subscription
	if a.recorder != nil {
		recSub = a.hub.Subscribe(media.SubscribeOptions{Name: "recorder", QueueFrames: 4 * a.cfg.Media.Hub.QueueFrames})
	}

	// The source stops first; recorders stop after it, so they can finish the last file.
	sourceCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	recordCtx, stopRecording := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRecording()

	g := new(errgroup.Group)
	if recSub != nil {
		g.Go(func() error {
			if err := a.recorder.Record(recordCtx, recSub); err != nil {
				return fmt.Errorf("local recording: %w", err)
			}
			return nil
		})
	}
	srcErr := a.source.Run(sourceCtx)
	switch {
	case errors.Is(srcErr, media.ErrSourceEnded):
		a.log.Info("video source ended")
		srcErr = nil
	case srcErr != nil:
		srcErr = fmt.Errorf("video source: %w", srcErr)
	}
	stopRecording()
	recErr := g.Wait()
	a.hub.Close()

	fields := []zap.Field{zap.Uint64("frames", a.source.Frames())}
	if a.recorder != nil {
		fields = append(fields, zap.Int("segments", len(a.recorder.Files())), zap.String("recordings", a.cfg.RecordingsDir()))
	}
	a.log.Info("stopped", fields...)
	return errors.Join(srcErr, recErr)
}

// Recordings returns the local segment files written so far.
func (a *Agent) Recordings() []string {
	if a.recorder == nil {
		return nil
	}
	return a.recorder.Files()
}

// Frames returns how many access units the source has published.
func (a *Agent) Frames() uint64 { return a.source.Frames() }
