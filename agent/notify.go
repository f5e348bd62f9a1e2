package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// notifier tells systemd how the service is doing (sd_notify): READY=1 once video flows,
// STATUS= with the current phase, WATCHDOG=1 while frames flow and the supervisor loop runs,
// RELOADING=1 and STOPPING=1. Without NOTIFY_SOCKET (not under systemd) it does nothing.
type notifier struct {
	log *zap.Logger
	// watchdog is WatchdogSec as systemd passed it (WATCHDOG_USEC); 0 when off.
	watchdog time.Duration
	ready    bool // READY=1 sent for the running agent
	// started is true once READY=1 went out the first time: from then on systemd runs the
	// watchdog, and an agent restarted inside the process gets no start-up grace.
	started bool
	status  string // the last STATUS= sent
	warned  bool   // a failed send was logged
}

func newNotifier(log *zap.Logger) *notifier {
	n := &notifier{log: log}
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings unreadable; not sending keep-alives", zap.Error(err))
	}
	n.watchdog = d
	return n
}

// frameLimit is how old the newest frame may be for the watchdog to be fed: half the
// watchdog period, so that systemd hears nothing within one period of video stopping.
func (n *notifier) frameLimit() time.Duration { return n.watchdog / 2 }

// interval is how often the supervisor checks the agent and feeds the watchdog.
func (n *notifier) interval() time.Duration {
	if n.watchdog > 0 && n.watchdog/4 < time.Second {
		return n.watchdog / 4
	}
	return time.Second
}

func (n *notifier) send(lines ...string) {
	ok, err := daemon.SdNotify(false, strings.Join(lines, "\n"))
	if err != nil && !n.warned {
		n.warned = true
		n.log.Warn("cannot notify systemd (NOTIFY_SOCKET)", zap.Error(err))
	}
	_ = ok // false without NOTIFY_SOCKET: not under systemd
}

// setStatus sends STATUS= when it changed, with READY=1 the first time ready is true.
func (n *notifier) setStatus(status string, ready bool) {
	var lines []string
	if ready && !n.ready {
		n.ready, n.started = true, true
		lines = append(lines, daemon.SdNotifyReady)
		n.log.Info("ready: video flows", zap.String("status", status))
	}
	if status != n.status {
		n.status = status
		lines = append(lines, "STATUS="+status)
	}
	if len(lines) > 0 {
		n.send(lines...)
	}
}

// reloading tells systemd a reload is under way; READY=1 ends it. Before the agent is
// ready (still starting) there is nothing to reload as far as systemd knows: status only.
func (n *notifier) reloading(status string) {
	n.status = status
	if !n.ready {
		n.send("STATUS=" + status)
		return
	}
	n.send(daemon.SdNotifyReloading, fmt.Sprintf("MONOTONIC_USEC=%d", monotonicUsec()), "STATUS="+status)
}

// reloaded ends a reload (READY=1 only when the agent was ready: READY=1 means video flows).
func (n *notifier) reloaded(status string) {
	n.status = status
	if !n.ready {
		n.send("STATUS=" + status)
		return
	}
	n.send(daemon.SdNotifyReady, "STATUS="+status)
}

func (n *notifier) stopping(status string) {
	n.status = status
	n.send(daemon.SdNotifyStopping, "STATUS="+status)
}

// keepAlive feeds the watchdog.
func (n *notifier) keepAlive() {
	if n.watchdog > 0 {
		n.send(daemon.SdNotifyWatchdog)
	}
}

// clockState reports whether the system clock is synchronised, as far as this machine says:
// systemd-timesyncd creates /run/systemd/timesync/synchronized once it is. With another
// time service (no timesync directory) the state is unknown.
func clockState(dir string) (synced, known bool) {
	if dir == "" {
		return false, false
	}
	if _, err := os.Stat(dir); err != nil {
		return false, false
	}
	_, err := os.Stat(filepath.Join(dir, "synchronized"))
	return err == nil, true
}

// DefaultTimesyncDir is where systemd-timesyncd says the clock is synchronised.
const DefaultTimesyncDir = "/run/systemd/timesync"

// phase describes what the agent is doing, for STATUS= (one line, no figures that change
// every second, so that systemd hears of changes only).
func (a *Agent) phase(timesyncDir string) string {
	var parts []string
	switch a.pipelineState() {
	case pipelineStarting:
		parts = append(parts, "starting: waiting for the first video frame ("+a.cfg.Media.Source.Kind+")")
	case pipelineStalled:
		_, restarts := a.source.Stats()
		parts = append(parts, fmt.Sprintf("video stalled (%s source, %d pipeline restarts so far)", a.cfg.Media.Source.Kind, restarts))
	default:
		parts = append(parts, "streaming ("+a.cfg.Media.Source.Kind+")")
	}
	if a.cfg.IoT.Endpoint == "" {
		parts = append(parts, "cloud off")
	} else {
		conn := a.deviceConn()
		online := conn != nil && conn.Connected()
		if synced, known := clockState(timesyncDir); known && !synced && !online {
			parts = append(parts, "waiting for clock")
		}
		switch {
		case a.Thing() == "":
			parts = append(parts, "provisioning")
		case online:
			parts = append(parts, "cloud online as "+a.Thing())
		default:
			parts = append(parts, "cloud offline")
		}
	}
	if a.webrtc != nil {
		switch v := a.webrtc.Viewers(); v {
		case 0:
		case 1:
			parts = append(parts, "1 viewer")
		default:
			parts = append(parts, fmt.Sprintf("%d viewers", v))
		}
	}
	if a.MotionActive() {
		parts = append(parts, "motion")
	}
	return strings.Join(parts, "; ")
}
