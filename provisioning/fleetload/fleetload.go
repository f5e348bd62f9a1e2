// Package fleetload is a fleet load test of AWS IoT fleet provisioning by claim: it brings up
// many simulated devices, each through the real code a device runs — its own key and
// certificate signing request, CreateCertificateFromCsr and RegisterThing on the claim
// connection (package provisioning), then a connection with its new certificate as its thing
// and a status message acknowledged by the broker (package iot) — started at a paced rate
// with a cap on devices in flight. It measures each phase's latency and groups the failures
// by what went wrong. Against localcloud it measures localcloud; against an AWS IoT endpoint
// it is a manufacturer's load test of their provisioning template and pre-provisioning hook.
package fleetload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgecam/edgecam/iot"
	"github.com/edgecam/edgecam/provisioning"
	"go.uber.org/zap"
)

// Phases of a simulated device, as failures name them.
const (
	PhaseSetup     = "setup"     // the device's identity store
	PhaseProvision = "provision" // CreateCertificateFromCsr (or CreateKeysAndCertificate) and RegisterThing
	PhaseConnect   = "connect"   // MQTT connection with the new certificate, as the thing
	PhaseStatus    = "status"    // status publish and its PUBACK
)

// Options configure a load test.
type Options struct {
	// Devices is how many simulated devices to bring up (≥ 1).
	Devices int
	// Rate is how many devices start per second; 0 starts them as fast as Concurrency allows.
	Rate float64
	// Concurrency caps the devices in flight (default 100).
	Concurrency int

	// Endpoint is the AWS IoT (or localcloud) MQTT endpoint, host[:port].
	Endpoint string
	// RootCAs verify the endpoint (nil: the system's roots); CAPEM is kept with each identity.
	RootCAs *x509.CertPool
	CAPEM   []byte
	// ClaimCert is the fleet's claim certificate and key.
	ClaimCert tls.Certificate
	// Template is the fleet provisioning template.
	Template string
	// SerialPrefix names the devices: device i's serial number is SerialPrefix followed by i
	// (from 1, zero-padded to the width of Devices).
	SerialPrefix string
	// Parameters are extra template parameters (SerialNumber is always the device's serial).
	Parameters map[string]string
	// Method and KeyType are provisioning.Method* and provisioning.Key* (defaults: CSR, ECDSA P-256).
	Method  string
	KeyType string
	// Timeout bounds each answer and each connection (default 30 s); Attempts bounds each
	// device's provisioning tries on transient failures (default 1: a load test counts them).
	Timeout  time.Duration
	Attempts int

	// StateDir holds each device's identity store, StateDir/<serial>; it must exist.
	StateDir string
	// Version is the version the status messages report.
	Version string
	// Progress, when set, is called (from the devices' goroutines) as each device finishes.
	Progress func(Result)
	Log      *zap.Logger
}

// StatusTopic is where a device publishes its status, as the agent does.
func StatusTopic(thing string) string { return "edgecam/" + thing + "/status" }

// Status is the status message a simulated device publishes: the agent's status document's
// top-level fields.
type Status struct {
	ThingName     string    `json:"thingName"`
	State         string    `json:"state"`
	Version       string    `json:"version"`
	Timestamp     time.Time `json:"timestamp"`
	UptimeSeconds int64     `json:"uptimeSeconds"`
}

// Result is one simulated device's outcome.
type Result struct {
	Index         int           `json:"index"`
	Serial        string        `json:"serial"`
	Thing         string        `json:"thing,omitempty"`
	CertificateID string        `json:"certificateId,omitempty"`
	Started       time.Time     `json:"started"`
	Provision     time.Duration `json:"provisionNs,omitempty"`
	Connect       time.Duration `json:"connectNs,omitempty"`
	Status        time.Duration `json:"statusNs,omitempty"`
	Total         time.Duration `json:"totalNs"`
	// Phase and Err say where and why the device failed (empty: it succeeded).
	Phase string `json:"phase,omitempty"`
	Err   error  `json:"-"`
}

// OK reports whether the device went through every phase.
func (r Result) OK() bool { return r.Err == nil }

// serialPrefixRE is what a thing name and an MQTT client ID both allow on AWS IoT.
var serialPrefixRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]+$`)

// maxSerial is the longest thing name (and client ID) AWS IoT allows.
const maxSerial = 128

// Validate checks the options and says what to fix.
func (o *Options) Validate() error {
	var errs []error
	if o.Devices < 1 {
		errs = append(errs, fmt.Errorf("devices %d: simulate at least 1 device", o.Devices))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %g: use a positive number of devices per second, or 0 for as fast as the concurrency allows", o.Rate))
	}
	if o.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d: use at least 1 (0: the default, 100)", o.Concurrency))
	}
	if o.Endpoint == "" {
		errs = append(errs, errors.New("no endpoint: give the AWS IoT endpoint (<prefix>-ats.iot.<region>.amazonaws.com) or localcloud's"))
	}
	if len(o.ClaimCert.Certificate) == 0 {
		errs = append(errs, errors.New("no claim certificate: give the fleet's claim certificate and key"))
	}
	if o.Template == "" {
		errs = append(errs, errors.New("no provisioning template: give the fleet provisioning template's name"))
	}
	if o.SerialPrefix == "" {
		errs = append(errs, errors.New("no serial prefix: the devices' serial numbers need one"))
	} else if !serialPrefixRE.MatchString(o.SerialPrefix) {
		errs = append(errs, fmt.Errorf("serial prefix %q: use letters, digits, ':', '_' and '-' only (serial numbers name things, MQTT clients and directories)", o.SerialPrefix))
	} else if n := len(o.SerialPrefix) + len(fmt.Sprint(o.Devices)); n > maxSerial {
		errs = append(errs, fmt.Errorf("serial prefix %q: serial numbers would be %d characters; AWS IoT allows %d", o.SerialPrefix, n, maxSerial))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s: use a positive duration", o.Timeout))
	}
	if o.Attempts < 0 {
		errs = append(errs, fmt.Errorf("attempts %d: use at least 1", o.Attempts))
	}
	if o.StateDir == "" {
		errs = append(errs, errors.New("no state directory for the devices' identities"))
	} else if st, err := os.Stat(o.StateDir); err != nil || !st.IsDir() {
		errs = append(errs, fmt.Errorf("state directory %s: not a directory (%v); create it first", o.StateDir, err))
	}
	return errors.Join(errs...)
}

// Serials returns the serial numbers Run gives the devices, in order.
func (o *Options) Serials() []string {
	width := len(fmt.Sprint(o.Devices))
	out := make([]string, o.Devices)
	for i := range out {
		out[i] = fmt.Sprintf("%s%0*d", o.SerialPrefix, width, i+1)
	}
	return out
}

// Run brings up the devices and reports what happened. It returns an error only for bad
// options or when ctx ends before every device started; failed devices are in the Report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 100
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Attempts == 0 {
		opts.Attempts = 1
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	serials := opts.Serials()
	results := make([]Result, len(serials))
	slots := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	begin := time.Now()
	var lastStart time.Time
	var stopped error
	started := len(serials)
	for i, serial := range serials {
		// Token pacing: device i starts no earlier than i/Rate after the first.
		if opts.Rate > 0 {
			at := begin.Add(time.Duration(float64(i) / opts.Rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				timer := time.NewTimer(d)
				select {
				case <-ctx.Done():
				case <-timer.C:
				}
				timer.Stop()
			}
		}
		select {
		case <-ctx.Done():
		case slots <- struct{}{}:
		}
		if ctx.Err() != nil {
			stopped = fmt.Errorf("stopped after starting %d of %d devices: %w", i, len(serials), ctx.Err())
			started = i
			break
		}
		lastStart = time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			r := device(ctx, opts, i, serial)
			results[i] = r
			if opts.Progress != nil {
				opts.Progress(r)
			}
		}()
	}
	wg.Wait()
	rep := newReport(opts, results[:started], begin, lastStart, time.Now())
	return rep, stopped
}

// device is one simulated device's life: provision, connect as the thing, publish status.
func device(ctx context.Context, opts Options, index int, serial string) (r Result) {
	r = Result{Index: index + 1, Serial: serial, Started: time.Now()}
	defer func() { r.Total = time.Since(r.Started) }()
	fail := func(phase string, err error) Result {
		r.Phase, r.Err = phase, err
		return r
	}
	store, err := provisioning.OpenStore(filepath.Join(opts.StateDir, serial))
	if err != nil {
		return fail(PhaseSetup, err)
	}
	log := opts.Log.With(zap.String("serial", serial))

	t := time.Now()
	id, err := provisioning.Provision(ctx, store, provisioning.FleetOptions{
		Endpoint: opts.Endpoint, RootCAs: opts.RootCAs, CAPEM: opts.CAPEM, ClaimCert: opts.ClaimCert,
		Template: opts.Template, Serial: serial, Parameters: opts.Parameters,
		Method: opts.Method, KeyType: opts.KeyType, Timeout: opts.Timeout, Attempts: opts.Attempts,
		Log: log.Named("provisioning"),
	})
	if err != nil {
		return fail(PhaseProvision, err)
	}
	r.Provision = time.Since(t)
	r.Thing, r.CertificateID = id.ThingName, id.CertificateID
	cert, err := store.TLSCertificate(id)
	if err != nil {
		return fail(PhaseProvision, err)
	}

	topic := StatusTopic(id.ThingName)
	offline, _ := json.Marshal(Status{ThingName: id.ThingName, State: "offline", Version: opts.Version, Timestamp: time.Now().UTC().Truncate(time.Millisecond)})
	t = time.Now()
	conn, err := iot.Dial(ctx, iot.Options{
		Endpoint: opts.Endpoint, RootCAs: opts.RootCAs, Certificate: cert, ClientID: id.ThingName,
		ConnectTimeout: opts.Timeout, Will: &iot.Message{Topic: topic, Payload: offline}, Log: log.Named("mqtt"),
	})
	if err != nil {
		return fail(PhaseConnect, err)
	}
	r.Connect = time.Since(t)
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()

	payload, _ := json.Marshal(Status{ThingName: id.ThingName, State: "running", Version: opts.Version, Timestamp: time.Now().UTC().Truncate(time.Millisecond)})
	t = time.Now()
	pubCtx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := conn.Publish(pubCtx, topic, payload, 1); err != nil {
		if pubCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: no PUBACK within %s", err, opts.Timeout)
		}
		return fail(PhaseStatus, err)
	}
	r.Status = time.Since(t)
	return r
}

// Report is a load test's outcome.
type Report struct {
	Devices     int     `json:"devices"`
	OK          int     `json:"ok"`
	Failed      int     `json:"failed"`
	Rate        float64 `json:"requestedRate"` // 0: unlimited
	Concurrency int     `json:"concurrency"`
	// Elapsed is from the first device's start to the last one's end.
	Elapsed        time.Duration `json:"-"`
	ElapsedSeconds float64       `json:"elapsedSeconds"`
	// StartRate is the rate devices actually started at; Throughput is devices that went
	// through every phase per second of Elapsed.
	StartRate  float64 `json:"startRate"`
	Throughput float64 `json:"throughput"`
	// Latencies of the successful phases, and of whole successful devices.
	Provision Percentiles `json:"provision"`
	Connect   Percentiles `json:"connect"`
	Status    Percentiles `json:"status"`
	Total     Percentiles `json:"total"`
	// Failures grouped by phase and message, most frequent first.
	Failures []FailureGroup `json:"failures"`
	Results  []Result       `json:"-"`
}

// Percentiles summarise latencies (nearest rank).
type Percentiles struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"-"`
	P90   time.Duration `json:"-"`
	P99   time.Duration `json:"-"`
	Max   time.Duration `json:"-"`
}

// MarshalJSON writes the percentiles in milliseconds.
func (p Percentiles) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return json.Marshal(struct {
		Count int     `json:"count"`
		P50   float64 `json:"p50Ms"`
		P90   float64 `json:"p90Ms"`
		P99   float64 `json:"p99Ms"`
		Max   float64 `json:"maxMs"`
	}{p.Count, ms(p.P50), ms(p.P90), ms(p.P99), ms(p.Max)})
}

// FailureGroup is the devices that failed in the same phase with the same message (serial
// numbers and thing names replaced by <serial> and <thing>).
type FailureGroup struct {
	Phase   string   `json:"phase"`
	Message string   `json:"message"`
	Count   int      `json:"count"`
	Serials []string `json:"serials"` // the first few
}

// maxGroupSerials is how many serial numbers a failure group lists.
const maxGroupSerials = 5

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(ds))+0.999999) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return Percentiles{Count: len(ds), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: ds[len(ds)-1]}
}

// failureMessage is err's message with the device's own names taken out, so that the same
// failure on many devices groups together.
func failureMessage(r Result) string {
	msg := r.Err.Error()
	if r.Thing != "" && r.Thing != r.Serial {
		msg = strings.ReplaceAll(msg, r.Thing, "<thing>")
	}
	return strings.ReplaceAll(msg, r.Serial, "<serial>")
}

func newReport(opts Options, results []Result, begin, lastStart, end time.Time) *Report {
	rep := &Report{Devices: len(results), Rate: opts.Rate, Concurrency: opts.Concurrency, Results: results}
	if len(results) == 0 {
		return rep
	}
	last := begin
	var prov, conn, stat, total []time.Duration
	groups := map[[2]string]*FailureGroup{}
	for _, r := range results {
		if end := r.Started.Add(r.Total); end.After(last) {
			last = end
		}
		if r.OK() {
			rep.OK++
			prov, conn, stat, total = append(prov, r.Provision), append(conn, r.Connect), append(stat, r.Status), append(total, r.Total)
			continue
		}
		rep.Failed++
		key := [2]string{r.Phase, failureMessage(r)}
		g := groups[key]
		if g == nil {
			g = &FailureGroup{Phase: key[0], Message: key[1]}
			groups[key] = g
		}
		g.Count++
		if len(g.Serials) < maxGroupSerials {
			g.Serials = append(g.Serials, r.Serial)
		}
	}
	rep.Elapsed = last.Sub(begin)
	rep.ElapsedSeconds = rep.Elapsed.Seconds()
	if span := lastStart.Sub(begin); span > 0 && len(results) > 1 {
		rep.StartRate = float64(len(results)-1) / span.Seconds()
	}
	if rep.Elapsed > 0 {
		rep.Throughput = float64(rep.OK) / rep.Elapsed.Seconds()
	}
	rep.Provision, rep.Connect, rep.Status, rep.Total = percentiles(prov), percentiles(conn), percentiles(stat), percentiles(total)
	rep.Failures = make([]FailureGroup, 0, len(groups))
	for _, g := range groups {
		rep.Failures = append(rep.Failures, *g)
	}
	sort.Slice(rep.Failures, func(i, j int) bool {
		a, b := rep.Failures[i], rep.Failures[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Phase+a.Message < b.Phase+b.Message
	})
	return rep
}
