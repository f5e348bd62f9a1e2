// Package soak runs the built edgecam agent (edgecam run, a child process) for a long time
// against an in-process localcloud, with the churn of a real deployment: a motion clip
// looped forever, recording into local segments and through the native uploader's spool
// into localcloud's KVS, Go WebRTC viewers joining and leaving every minute, short-lived
// AWS credentials that rotate, and a localcloud restart mid-run. It samples the agent
// process (RSS, goroutines, open files, threads) and its outputs (spool, segments, motion
// events, KVS fragments) at a fixed interval, and writes samples.csv, soak.svg and
// verdict.txt: growth after the warm-up, and every way the agent stopped doing its job.
// make soak runs it through scripts/soak.
package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/kvsviewer"
	"github.com/edgecam/edgecam/localcloud"
	"go.yaml.in/yaml/v3"
)

// Thing is the soak device's serial number and thing name (and its stream and channel).
const Thing = "SOAK-0001"

// Options configure a soak.
type Options struct {
	// Agent is the edgecam binary to run; Clip the H.264 video it plays, looped.
	Agent, Clip string
	// Out receives samples.csv, soak.svg, verdict.txt and agent.log; Out/work holds the
	// agent's and localcloud's state (emptied first).
	Out string
	// Duration of the run, from the agent's start (default 30 min).
	Duration time.Duration
	// Interval between samples (default 10 s).
	Interval time.Duration
	// ViewerEvery: the viewers leave and 1 to MaxViewers new ones join this often (default
	// 1 min, cycling 1, 2, 3 viewers).
	ViewerEvery time.Duration
	MaxViewers  int
	// CredentialLifetime of the credentials localcloud issues (default 5 min) and the
	// agent's credentials.refresh_before (default 1 min): they rotate every few minutes.
	CredentialLifetime, RefreshBefore time.Duration
	// RestartAt is when localcloud stops (default half-way, between viewer joins) for
	// RestartDown (default 10 s); negative: no restart.
	RestartAt, RestartDown time.Duration
	// Recording mode (default motion: segments and uploads open and close with events).
	Recording string
	// Criteria of the verdict (default CriteriaFor(Duration)).
	Criteria *Criteria
	// Progress receives a line a minute (nil: none).
	Progress io.Writer
}

func (o *Options) defaults() error {
	if o.Agent == "" || o.Clip == "" || o.Out == "" {
		return errors.New("soak: the agent binary, the clip and the output directory must be given")
	}
	for _, p := range []string{o.Agent, o.Clip} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("soak: %w (make build, make testdata)", err)
		}
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.ViewerEvery <= 0 {
		o.ViewerEvery = time.Minute
	}
	if o.MaxViewers <= 0 {
		o.MaxViewers = 3
	}
	if o.CredentialLifetime <= 0 {
		o.CredentialLifetime = 5 * time.Minute
	}
	if o.RefreshBefore <= 0 {
		o.RefreshBefore = time.Minute
	}
	if o.RestartAt == 0 {
		o.RestartAt = o.Duration/2 + o.ViewerEvery/2
	}
	if o.RestartDown <= 0 {
		o.RestartDown = 10 * time.Second
	}
	if o.Recording == "" {
		o.Recording = config.RecordMotion
	}
	if o.Criteria == nil {
		c := CriteriaFor(o.Duration)
		o.Criteria = &c
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// Result is a finished soak.
type Result struct {
	Verdict Verdict
	Run     Observed
	// Files written.
	CSV, SVG, VerdictFile, AgentLog string
}

// soaker is one run.
type soaker struct {
	o       Options
	work    string
	clip    string    // the copy the agent plays
	start   time.Time // the agent's start
	metrics string    // the agent's /metrics URL

	cloudMu   sync.Mutex
	cloudOpts localcloud.Options
	cloud     *localcloud.Cloud // nil while down
	cancel    context.CancelFunc
	kvsBase   int64 // fragments persisted by earlier localcloud instances
	kvsLast   int64 // the current instance's count, last seen

	evMu   sync.Mutex
	events map[string]bool // distinct motion "start" messages on the broker

	vMu       sync.Mutex
	viewers   []ViewerRecord
	holding   int
	restartMu sync.Mutex
	down, up  time.Duration
}

// Run runs a soak; its error is for a soak that could not start (the verdict says how the
// agent fared).
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.defaults(); err != nil {
		return Result{}, err
	}
	s := &soaker{o: o, work: filepath.Join(o.Out, "work"), events: map[string]bool{}}
	res := Result{CSV: filepath.Join(o.Out, "samples.csv"), SVG: filepath.Join(o.Out, "soak.svg"),
		VerdictFile: filepath.Join(o.Out, "verdict.txt"), AgentLog: filepath.Join(o.Out, "agent.log")}
	if err := os.RemoveAll(s.work); err != nil {
		return res, fmt.Errorf("soak: %w", err)
	}
	if err := os.MkdirAll(s.work, 0o755); err != nil {
		return res, fmt.Errorf("soak: %w", err)
	}
	// The agent plays a copy: make testdata may regenerate the clips meanwhile.
	clip := filepath.Join(s.work, "clip"+filepath.Ext(o.Clip))
	if err := copyFile(o.Clip, clip); err != nil {
		return res, err
	}
	s.clip = clip
	ports, err := freePorts(5)
	if err != nil {
		return res, err
	}
	s.cloudOpts = localcloud.Options{Dir: filepath.Join(s.work, "localcloud"), AllowSerials: []string{Thing},
		MQTTPort: ports[0], CredentialsPort: ports[1], KVSPort: ports[2], TURN: true, TURNPort: ports[3],
		CredentialLifetime: o.CredentialLifetime}
	if err := s.startCloud(); err != nil {
		return res, err
	}
	defer s.stopCloud()
	cfgPath, err := s.writeAgentConfig(ports[4])
	if err != nil {
		return res, err
	}
	logf, err := os.Create(res.AgentLog)
	if err != nil {
		return res, fmt.Errorf("soak: %w", err)
	}
	defer logf.Close()
	out, err := newCSVWriter(res.CSV)
	if err != nil {
		return res, err
	}
	defer out.close()

	agent := exec.Command(o.Agent, "run", "--config", cfgPath)
	agent.Env = agentEnv()
	agent.Stdout, agent.Stderr = logf, logf
	if err := agent.Start(); err != nil {
		return res, fmt.Errorf("soak: starting the agent: %w", err)
	}
	s.start = time.Now()
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	fmt.Fprintf(o.Progress, "soak: agent pid %d, %s for %s, samples every %s; output in %s\n", agent.Process.Pid, o.Recording, o.Duration, o.Interval, o.Out)

	// The churn stops after the last sample (taken at Duration), not while it is taken.
	runCtx, stopRun := context.WithDeadline(ctx, s.start.Add(o.Duration+o.Interval/2))
	defer stopRun()
	var run Observed
	run.CredentialLifetime = o.CredentialLifetime
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.viewerLoop(runCtx) }()
	go func() { defer wg.Done(); s.restartLoop(runCtx) }()

	client := &http.Client{Timeout: 5 * time.Second}
	var agentErr error
	agentDone := false
	for k := 0; ; k++ {
		at := s.start.Add(time.Duration(k) * o.Interval)
		if at.After(s.start.Add(o.Duration)) {
			break
		}
		select {
		case <-time.After(time.Until(at)):
		case agentErr = <-exited:
			agentDone = true
		case <-runCtx.Done():
		}
		if agentDone || ctx.Err() != nil {
			break
		}
		smp := s.sample(ctx, client, agent.Process.Pid)
		run.Samples = append(run.Samples, smp)
		if err := out.write(smp); err != nil {
			return res, fmt.Errorf("soak: samples: %w", err)
		}
		if k%int(max(1, time.Minute/o.Interval)) == 0 {
			fmt.Fprintf(o.Progress, "soak %s: rss %.1f MB, goroutines %.0f, fds %.0f, threads %.0f, spool %.0f, segments %.0f, viewers %.0f, motion %.0f/%.0f, kvs %.0f, load %.1f\n",
				rnd(smp.T), smp.RSSMB, smp.Goroutines, smp.FDs, smp.Threads, smp.SpoolFragments, smp.Segments, smp.Viewers, smp.MotionEvents, smp.BrokerEvents, smp.KVSFragments, smp.Load1)
		}
	}
	stopRun()
	wg.Wait()
	if agentDone {
		run.AgentExit = fmt.Sprintf("at %s: %v (see %s)", rnd(time.Since(s.start)), exitText(agentErr), res.AgentLog)
	} else {
		run.Shutdown = stopAgent(agent, exited)
	}
	s.vMu.Lock()
	run.Viewers = append([]ViewerRecord(nil), s.viewers...)
	s.vMu.Unlock()
	s.restartMu.Lock()
	run.RestartDown, run.RestartUp = s.down, s.up
	s.restartMu.Unlock()
	res.Run = run
	res.Verdict = Judge(run, *o.Criteria)
	if err := s.writeResults(res); err != nil {
		return res, err
	}
	return res, nil
}

func (s *soaker) writeResults(res Result) error {
	head := fmt.Sprintf("edgecam soak: %s, %s recording, samples every %s — %s",
		rnd(s.o.Duration), s.o.Recording, s.o.Interval, map[bool]string{true: "PASS", false: "FAIL"}[res.Verdict.Pass])
	var lines []string
	for _, g := range res.Verdict.Growth {
		lines = append(lines, fmt.Sprintf("%s %+.1f %%", g.Metric, 100*g.Fraction))
	}
	title := head + "\ngrowth after the warm-up (median of the final window against the baseline): " + strings.Join(lines, ", ")
	if len(res.Verdict.Failures) > 0 {
		title += "\n" + res.Verdict.Failures[0]
	}
	f, err := os.Create(res.SVG)
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	if err := Plot(f, title, res.Run.Samples, res.Run, *s.o.Criteria); err != nil {
		f.Close()
		return fmt.Errorf("soak: plot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("soak: plot: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "edgecam soak, %s\n", s.start.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "  run: %s, %s recording into local segments and the native uploader's spool, clip %s looped\n", rnd(s.o.Duration), s.o.Recording, filepath.Base(s.o.Clip))
	fmt.Fprintf(&b, "  churn: 1-%d viewers joining and leaving every %s, credentials living %s (refreshed %s before expiry), localcloud restart at %s for %s\n",
		s.o.MaxViewers, s.o.ViewerEvery, s.o.CredentialLifetime, s.o.RefreshBefore, rnd(s.o.RestartAt), s.o.RestartDown)
	c := s.o.Criteria
	fmt.Fprintf(&b, "  windows: baseline %s-%s, final the last %s; growth limit %.0f %%\n", rnd(c.Warmup), rnd(c.Warmup+c.Baseline), rnd(c.Final), 100*c.MaxGrowth)
	b.WriteString(res.Verdict.String())
	if err := os.WriteFile(res.VerdictFile, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	return nil
}

// agentEnv is the environment without EDGECAM_* variables: the agent refuses those it
// does not know, and the soak's configuration is in its file.
func agentEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "EDGECAM_") {
			env = append(env, e)
		}
	}
	return env
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// stopAgent sends SIGTERM and waits; it describes an unclean end ("" for a clean one).
func stopAgent(agent *exec.Cmd, exited <-chan error) string {
	_ = agent.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return exitText(err)
		}
		return ""
	case <-time.After(90 * time.Second):
		_ = agent.Process.Kill()
		<-exited
		return "still running 90 s after SIGTERM (killed)"
	}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("soak: the clip: %w (make testdata)", err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("soak: free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeAgentConfig writes the agent's configuration file.
func (s *soaker) writeAgentConfig(metricsPort int) (string, error) {
	s.cloudMu.Lock()
	cloud := s.cloud
	s.cloudMu.Unlock()
	c := config.Default()
	c.StateDir = filepath.Join(s.work, "state")
	c.Log.Level, c.Log.Format = "info", "console"
	c.Device.Serial = Thing
	cloud.ConfigureAgent(&c)
	c.Credentials.RefreshBefore = s.o.RefreshBefore
	c.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(metricsPort)
	s.metrics = "http://" + c.Metrics.Listen + "/metrics"
	c.Media.Source.Kind, c.Media.Source.Path, c.Media.Source.Loop = config.SourceFile, s.clip, true
	c.Recording.Mode = s.o.Recording
	// Local segments of 10 s, kept 5 minutes: segment files open, close and get deleted
	// all along, and their number levels off.
	c.Recording.Local.Enabled = true
	c.Recording.Local.Dir = filepath.Join(s.work, "recordings")
	c.Recording.Local.Segment = 10 * time.Second
	c.Recording.Local.MaxAge = max(time.Minute, s.o.Duration/6)
	// And KVS through the native uploader: every fragment goes through the disk spool.
	c.Recording.KVS.Enabled = true
	c.Recording.KVS.Uploader = config.KVSUploaderNative
	c.Recording.KVS.CreateStream = true
	if probs := c.Validate(); len(probs) > 0 {
		return "", fmt.Errorf("soak: the agent configuration is invalid: %v", probs)
	}
	// Only the keys set here go into the file (the agent binary may be older or newer than
	// this package's config; every other key keeps its default).
	type m = map[string]any
	rec := c.Recording
	data, err := yaml.Marshal(m{
		"state_dir": c.StateDir,
		"log":       m{"level": c.Log.Level, "format": c.Log.Format},
		"aws":       m{"region": c.AWS.Region},
		"device":    m{"serial": c.Device.Serial},
		"iot":       m{"endpoint": c.IoT.Endpoint, "ca_cert": c.IoT.CACert},
		"provisioning": m{"claim_cert": c.Provisioning.ClaimCert, "claim_key": c.Provisioning.ClaimKey,
			"template": c.Provisioning.Template},
		"credentials": m{"endpoint": c.Credentials.Endpoint, "role_alias": c.Credentials.RoleAlias,
			"refresh_before": c.Credentials.RefreshBefore.String()},
		"webrtc":  m{"control_plane": c.WebRTC.ControlPlane, "loopback": c.WebRTC.Loopback, "stun": c.WebRTC.STUN},
		"metrics": m{"listen": c.Metrics.Listen},
		"media":   m{"source": m{"kind": c.Media.Source.Kind, "path": c.Media.Source.Path, "loop": c.Media.Source.Loop}},
		"recording": m{"mode": rec.Mode,
			"local": m{"enabled": rec.Local.Enabled, "dir": rec.Local.Dir, "segment": rec.Local.Segment.String(),
				"max_age": rec.Local.MaxAge.String()},
			"kvs": m{"enabled": rec.KVS.Enabled, "uploader": rec.KVS.Uploader, "create_stream": rec.KVS.CreateStream,
				"control_plane_uri": rec.KVS.ControlPlaneURI}},
	})
	if err != nil {
		return "", fmt.Errorf("soak: %w", err)
	}
	path := filepath.Join(s.work, "edgecam.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("soak: %w", err)
	}
	return path, nil
}

// startCloud opens and starts localcloud on the soak's fixed ports.
func (s *soaker) startCloud() error {
	c, err := localcloud.Open(s.cloudOpts)
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		cancel()
		return fmt.Errorf("soak: %w", err)
	}
	if err := c.Observe("edgecam/+/events/motion", s.onMotion); err != nil {
		cancel()
		c.Close()
		return fmt.Errorf("soak: %w", err)
	}
	s.cloudMu.Lock()
	s.cloud, s.cancel, s.kvsLast = c, cancel, 0
	s.cloudMu.Unlock()
	return nil
}

func (s *soaker) stopCloud() {
	s.cloudMu.Lock()
	c, cancel := s.cloud, s.cancel
	s.cloud = nil
	s.kvsBase += s.kvsLast
	s.kvsLast = 0
	s.cloudMu.Unlock()
	if c != nil {
		cancel()
		c.Close()
	}
}

func (s *soaker) currentCloud() *localcloud.Cloud {
	s.cloudMu.Lock()
	defer s.cloudMu.Unlock()
	return s.cloud
}

func (s *soaker) onMotion(_ string, payload []byte) {
	var ev struct {
		Event string
		Start time.Time
	}
	if json.Unmarshal(payload, &ev) != nil || ev.Event != "start" {
		return
	}
	s.evMu.Lock()
	s.events[ev.Start.UTC().Format(time.RFC3339Nano)] = true
	s.evMu.Unlock()
}

// restartLoop stops localcloud at RestartAt and starts it again RestartDown later.
func (s *soaker) restartLoop(ctx context.Context) {
	if s.o.RestartAt < 0 {
		return
	}
	select {
	case <-time.After(time.Until(s.start.Add(s.o.RestartAt))):
	case <-ctx.Done():
		return
	}
	s.stopCloud()
	s.restartMu.Lock()
	s.down = time.Since(s.start)
	s.restartMu.Unlock()
	fmt.Fprintf(s.o.Progress, "soak %s: localcloud stopped\n", rnd(s.down))
	select {
	case <-time.After(s.o.RestartDown):
	case <-ctx.Done():
	}
	// Start it again even at the end: the agent's shutdown should find it.
	for attempt := 0; ; attempt++ {
		err := s.startCloud()
		if err == nil {
			break
		}
		fmt.Fprintf(s.o.Progress, "soak: localcloud did not start again (%v); retrying\n", err)
		if attempt == 10 {
			return
		}
		time.Sleep(time.Second)
	}
	s.restartMu.Lock()
	s.up = time.Since(s.start)
	s.restartMu.Unlock()
	fmt.Fprintf(s.o.Progress, "soak %s: localcloud started again\n", rnd(s.up))
}

// sample takes one Sample.
func (s *soaker) sample(ctx context.Context, client *http.Client, pid int) Sample {
	smp := nanSample(time.Since(s.start))
	_ = procStatus(pid, &smp) // an agent gone leaves NaN
	smp.FDs = openFDs(pid)
	smp.Load1 = load1()
	smp.Segments = countFiles(filepath.Join(s.work, "recordings"), config.FormatMKV)
	if m, err := scrape(ctx, client, s.metrics); err == nil {
		smp.Goroutines = metric(m, "go_goroutines")
		smp.GoHeapMB = metric(m, "go_memstats_heap_inuse_bytes") / (1 << 20)
		smp.SpoolBytes = metric(m, "edgecam_spool_bytes")
		smp.SpoolFragments = metric(m, "edgecam_spool_fragments")
		smp.Viewers = metric(m, "edgecam_viewers")
		smp.MotionEvents = metric(m, "edgecam_motion_events_total")
		smp.CredExpiryS = metric(m, "edgecam_credentials_expiry_seconds")
		smp.CloudConnected = metric(m, "edgecam_cloud_connected")
	}
	s.evMu.Lock()
	smp.BrokerEvents = float64(len(s.events))
	s.evMu.Unlock()
	s.vMu.Lock()
	smp.DriverViewers = float64(s.holding)
	s.vMu.Unlock()
	s.cloudMu.Lock()
	smp.CloudUp = 0
	if s.cloud != nil {
		smp.CloudUp = 1
		if st, err := s.cloud.KVSStreamStats(Thing); err == nil {
			s.kvsLast = st.FragmentsPersisted
		}
	}
	smp.KVSFragments = float64(s.kvsBase + s.kvsLast)
	s.cloudMu.Unlock()
	return smp
}

// heldViewer is a viewer the driver holds until the next cycle.
type heldViewer struct {
	v   *kvsviewer.Viewer
	idx int // in s.viewers
}

// viewerLoop makes 1, 2, ... MaxViewers viewers join every ViewerEvery, the previous ones
// leaving, once the agent serves live view.
func (s *soaker) viewerLoop(ctx context.Context) {
	var held []heldViewer
	leave := func() {
		for _, h := range held {
			frames := h.v.Counters().Frames
			h.v.Close()
			s.vMu.Lock()
			s.viewers[h.idx].Frames = frames
			s.vMu.Unlock()
		}
		held = nil
		s.vMu.Lock()
		s.holding = 0
		s.vMu.Unlock()
	}
	defer leave()
	if !s.waitMaster(ctx) {
		s.vMu.Lock()
		s.viewers = append(s.viewers, ViewerRecord{ID: "first", Joined: time.Since(s.start), Video: -1,
			Err: "the agent never became the signaling channel's master"})
		s.vMu.Unlock()
		return
	}
	first := time.Now()
	for k := 0; ; k++ {
		at := first.Add(time.Duration(k) * s.o.ViewerEvery)
		select {
		case <-time.After(time.Until(at)):
		case <-ctx.Done():
			return
		}
		leave()
		n := 1 + k%s.o.MaxViewers
		type joined struct {
			v   *kvsviewer.Viewer
			rec ViewerRecord
		}
		results := make(chan joined, n)
		for i := range n {
			id := fmt.Sprintf("soak-%03d-%d", k, i)
			go func() {
				v, rec := s.join(ctx, id, at.Add(s.o.ViewerEvery*3/4))
				results <- joined{v, rec}
			}()
		}
		for range n {
			j := <-results
			if ctx.Err() != nil && j.rec.Video < 0 {
				continue // cut short by the end of the run, not a failure
			}
			s.vMu.Lock()
			s.viewers = append(s.viewers, j.rec)
			idx := len(s.viewers) - 1
			if j.v != nil {
				s.holding++
			}
			s.vMu.Unlock()
			if j.v != nil {
				held = append(held, heldViewer{v: j.v, idx: idx})
			}
		}
	}
}

// waitMaster waits until the agent serves live view (it provisions and signs in first).
func (s *soaker) waitMaster(ctx context.Context) bool {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if c := s.currentCloud(); c != nil {
			if master, _ := c.SignalingPeers(Thing); master {
				return true
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
}

// join connects one viewer and waits for its first keyframe, retrying until deadline
// (localcloud may be restarting, or the agent still starting).
func (s *soaker) join(ctx context.Context, id string, deadline time.Time) (*kvsviewer.Viewer, ViewerRecord) {
	rec := ViewerRecord{ID: id, Joined: time.Since(s.start), Video: -1}
	jctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	began := time.Now()
	for {
		rec.Attempts++
		v, err := s.dial(jctx, id)
		if err == nil {
			rec.Video = time.Since(began)
			rec.Err = ""
			return v, rec
		}
		rec.Err = err.Error()
		select {
		case <-time.After(2 * time.Second):
		case <-jctx.Done():
			return nil, rec
		}
	}
}

func (s *soaker) dial(ctx context.Context, id string) (*kvsviewer.Viewer, error) {
	cloud := s.currentCloud()
	if cloud == nil {
		return nil, errors.New("localcloud is down")
	}
	if master, _ := cloud.SignalingPeers(Thing); !master {
		return nil, errors.New("the agent is not the signaling channel's master (yet)")
	}
	vc, err := cloud.ViewerConfig()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := kvsviewer.Dial(dctx, kvsviewer.Options{Region: vc.Region, ControlPlane: vc.ControlPlaneURL, Channel: Thing,
		AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey, ClientID: id, IncludeLoopback: true})
	if err != nil {
		return nil, err
	}
	if _, _, err := v.FirstKeyframe(dctx); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}
