package agent

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/motion"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// ServiceOptions configure RunService: the agent as a long-running service.
type ServiceOptions struct {
	// Options are the first configuration, the logger and the version.
	Options
	// Load reads the configuration again for a reload; nil refuses reloads.
	Load func() (config.Config, error)
	// Reloads receives one value for each reload request (SIGHUP).
	Reloads <-chan struct{}
	// LogLevel is the logger's level, which a reload changes in place (nil: log.level
	// changes need a restart of the process).
	LogLevel *zap.AtomicLevel
	// TimesyncDir is where systemd-timesyncd marks the clock synchronised (empty: the
	// default; "-": no clock check).
	TimesyncDir string
	// OnAgent, when set, sees every agent the service starts (the first, and each one a
	// reload starts inside the process).
	OnAgent func(*Agent)
}

// liveKeys are the configuration keys a reload applies while the agent runs; a change to
// any other key restarts the agent inside the process (recordings finalised first).
var liveKeys = []string{
	"log.level",
	"motion.sensitivity", "motion.start_frames", "motion.pre_roll", "motion.post_roll", "motion.event_gap",
	"motion.masks", "motion.polygons", "motion.idle_bitrate_kbps", "motion.idle_framerate",
	"media.encoder.bitrate_kbps",
	"webrtc.min_bitrate_kbps",
}

// RunService runs agents until ctx ends or the video source ends, and tells systemd about
// it (sd_notify): READY=1 once the first frames flow, STATUS= with each phase, WATCHDOG=1
// while frames flow and this supervisor runs. A reload request re-reads the configuration:
// keys that can change live do so, any other change restarts the agent inside the process
// (the last segment is finalised), and a configuration that does not load or does not
// work keeps the running one.
func RunService(ctx context.Context, o ServiceOptions) error {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.TimesyncDir == "" {
		o.TimesyncDir = DefaultTimesyncDir
	} else if o.TimesyncDir == "-" {
		o.TimesyncDir = ""
	}
	s := &service{o: o, log: o.Log, n: newNotifier(o.Log.Named("systemd"))}
	a, err := New(o.Options)
	if err != nil {
		return err
	}
	if s.n.watchdog > 0 {
		s.log.Info("systemd watchdog on", zap.Duration("period", s.n.watchdog), zap.Duration("frame_limit", s.n.frameLimit()))
	}
	s.start(ctx, a)
	tick := time.NewTicker(s.n.interval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.n.stopping("stopping: finalising recordings")
			return <-s.done
		case err := <-s.done:
			s.n.stopping("stopping: " + stopReason(err))
			return err
		case <-o.Reloads:
			s.reload(ctx)
		case <-tick.C:
		}
		s.check()
	}
}

func stopReason(err error) string {
	if err == nil {
		return "the video source ended"
	}
	return err.Error()
}

// service is RunService's state: the running agent and the notifier.
type service struct {
	o       ServiceOptions
	log     *zap.Logger
	n       *notifier
	a       *Agent
	cancel  context.CancelFunc
	done    chan error
	started time.Time // when the current agent started
}

func (s *service) start(ctx context.Context, a *Agent) {
	runCtx, cancel := context.WithCancel(ctx)
	s.a, s.cancel, s.done, s.started = a, cancel, make(chan error, 1), time.Now()
	if s.o.OnAgent != nil {
		s.o.OnAgent(a)
	}
	go func() { s.done <- a.Run(runCtx) }()
}

// check runs at every tick of the supervisor: the status, READY=1 with the first frames,
// and the watchdog's keep-alive while frames flow.
func (s *service) check() {
	a := s.a
	flowing := a.pipelineState() == pipelineStreaming
	s.n.setStatus(a.phase(s.o.TimesyncDir), flowing)
	if s.n.watchdog == 0 {
		return
	}
	// Before the first READY=1 the start is systemd's TimeoutStartSec's business; after
	// it, no frame for half the watchdog period stops the keep-alives, and systemd restarts
	// the service within the period.
	if !s.n.started || a.frameAgeFrom(s.started) < s.n.frameLimit() {
		s.n.keepAlive()
	}
}

// reload re-reads the configuration and applies it.
func (s *service) reload(ctx context.Context) {
	log := s.log.Named("reload")
	if s.o.Load == nil {
		log.Warn("reload requested, but this command cannot re-read its configuration")
		return
	}
	cur := *s.a.config()
	next, err := s.o.Load()
	if err != nil {
		s.a.metrics.Reloads.WithLabelValues("failed").Inc()
		log.Error("configuration not reloaded; the running one stays", zap.Error(err))
		s.n.reloaded("reload failed, running the previous configuration: " + firstLine(err.Error()))
		return
	}
	changed := changedKeys(cur, next)
	if len(changed) == 0 {
		log.Info("configuration reloaded: nothing changed")
		s.n.reloading("reloading the configuration")
		s.n.reloaded(s.a.phase(s.o.TimesyncDir))
		return
	}
	for _, k := range changed {
		if k == "log.format" {
			log.Warn("log.format changes when the process starts again (systemctl restart edgecam); the other changes apply now")
		}
	}
	if restart := notLive(changed); len(restart) > 0 {
		s.restart(ctx, next, changed, restart)
		return
	}
	s.n.reloading("reloading the configuration")
	s.a.applyLive(next, s.o.LogLevel)
	s.a.metrics.Reloads.WithLabelValues("live").Inc()
	log.Info("configuration reloaded while running", zap.Strings("changed", changed))
	s.n.reloaded(s.a.phase(s.o.TimesyncDir))
}

// restart stops the agent (finalising its recordings) and starts one with next; when next
// cannot start on this machine, the previous configuration runs again.
func (s *service) restart(ctx context.Context, next config.Config, changed, restart []string) {
	log := s.log.Named("reload")
	log.Info("configuration reloaded: restarting the agent inside the process", zap.Strings("changed", changed), zap.Strings("need_restart", restart))
	s.n.reloading("reloading: restarting the agent for " + strings.Join(restart, ", "))
	old := s.a
	s.cancel()
	if err := <-s.done; err != nil {
		log.Warn("the agent stopped with an error before the restart", zap.Error(err))
	}
	opts := s.o.Options
	opts.Config = next
	a, err := New(opts)
	if err != nil {
		old.metrics.Reloads.WithLabelValues("failed").Inc()
		log.Error("the new configuration cannot run here; running the previous one again", zap.Error(err))
		opts.Config = *old.config()
		if a, err = New(opts); err != nil {
			// It ran a moment ago; the machine changed under it (a camera unplugged...).
			log.Error("the previous configuration cannot run again either", zap.Error(err))
			s.done = make(chan error, 1)
			s.done <- fmt.Errorf("reload: %w", err)
			return
		}
	} else {
		a.metrics.Reloads.WithLabelValues("restart").Inc()
	}
	if s.o.LogLevel != nil {
		if lvl, err := zapcore.ParseLevel(opts.Config.Log.Level); err == nil {
			s.o.LogLevel.SetLevel(lvl)
		}
	}
	s.start(ctx, a)
	// READY=1 again once the new agent's frames flow: the notifier sends it with the
	// status when it sees them (setStatus with ready).
	s.n.ready = false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// notLive returns the changed keys that cannot change while the agent runs.
func notLive(changed []string) []string {
	var out []string
	for _, k := range changed {
		live := k == "log.format" // the logger outlives the agent: the next process start applies it
		for _, l := range liveKeys {
			if k == l {
				live = true
				break
			}
		}
		if !live {
			out = append(out, k)
		}
	}
	return out
}

// changedKeys lists the configuration keys (yaml paths) whose values differ.
func changedKeys(a, b config.Config) []string {
	var out []string
	var walk func(prefix string, va, vb reflect.Value)
	walk = func(prefix string, va, vb reflect.Value) {
		t := va.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			fa, fb := va.Field(i), vb.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() {
				walk(key, fa, fb)
				continue
			}
			if !reflect.DeepEqual(fa.Interface(), fb.Interface()) && !(isEmpty(fa) && isEmpty(fb)) {
				out = append(out, key)
			}
		}
	}
	walk("", reflect.ValueOf(a), reflect.ValueOf(b))
	return out
}

// isEmpty treats nil and empty slices and maps alike.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return false
}

// config returns the running configuration, with the live keys as the last reload left them.
func (a *Agent) config() *config.Config { return a.liveCfg.Load() }

// applyLive applies a configuration whose changes are all live keys.
func (a *Agent) applyLive(next config.Config, level *zap.AtomicLevel) {
	prev := a.config()
	a.liveCfg.Store(&next)
	if level != nil && next.Log.Level != prev.Log.Level {
		if lvl, err := zapcore.ParseLevel(next.Log.Level); err == nil {
			level.SetLevel(lvl)
		}
	}
	if !reflect.DeepEqual(prev.Motion, next.Motion) {
		select {
		case a.motionReload <- struct{}{}:
		default: // one is pending; it reads the newest settings
		}
	}
	if next.Media.Encoder.BitrateKbps != prev.Media.Encoder.BitrateKbps {
		switch {
		case !a.source.Encoding():
			a.log.Info("media.encoder.bitrate_kbps changed, but the camera's stream is passed through: its bitrate is the camera's")
		case a.encoderControlled():
			// controlEncoder applies it at its next step, within the idle/viewer profile.
		default:
			if err := a.source.SetBitrate(next.Media.Encoder.BitrateKbps); err != nil {
				a.log.Warn("encoder bitrate not changed", zap.Error(err))
			} else {
				a.log.Info("encoder bitrate", zap.Int("kbps", next.Media.Encoder.BitrateKbps))
			}
		}
	}
}

// encoderControlled reports whether controlEncoder sets the encoder's bitrate and frame rate.
func (a *Agent) encoderControlled() bool {
	cfg := a.config()
	motionOn := cfg.Motion.Enabled && cfg.Media.Analysis.Enabled
	return a.source.Encoding() && (a.webrtc != nil || motionOn)
}

// reloadMotion rebuilds the motion detector and gate from the live configuration (a
// reload changed motion settings). A new detector learns the background again (about
// WarmupFrames frames); a gate whose options changed ends the event under way first.
func (a *Agent) reloadMotion(log *zap.Logger, det *motion.Detector, gate *motion.Gate, dopts *motion.Options, gopts *motion.GateOptions) (*motion.Detector, *motion.Gate) {
	nd, ng := motion.FromConfig(*a.config())
	nd.Stride = dopts.Stride // the frames' real stride, as the running detector learnt it
	if !reflect.DeepEqual(nd, *dopts) {
		d, err := motion.NewDetector(nd)
		if err != nil {
			log.Error("motion settings not applied; the previous ones stay", zap.Error(err))
			return det, gate
		}
		det, *dopts = d, nd
	}
	if !reflect.DeepEqual(ng, *gopts) {
		g, err := motion.NewGate(ng)
		if err != nil {
			log.Error("motion event settings not applied; the previous ones stay", zap.Error(err))
			return det, gate
		}
		if ev, ok := gate.Flush(time.Now()); ok {
			a.onMotion(ev)
		}
		gate, *gopts = g, ng
	}
	diff, area := det.Thresholds()
	log.Info("motion settings applied", zap.Float64("sensitivity", nd.Sensitivity), zap.Float64("diff_threshold", diff), zap.Float64("area_threshold", area))
	return det, gate
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
