package fleetload

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

// startCloud runs a localcloud on free ports that allows serials, and collects the status
// messages its broker receives, by thing.
func startCloud(t testing.TB, allow []string) (*localcloud.Cloud, *statusLog) {
	t.Helper()
	c, err := localcloud.Open(localcloud.Options{Dir: t.TempDir(), AllowSerials: allow})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		c.Close()
	})
	require.NoError(t, c.Start(ctx))
	sl := &statusLog{byThing: map[string][]Status{}}
	require.NoError(t, c.Observe("edgecam/+/status", sl.add))
	return c, sl
}

type statusLog struct {
	mu      sync.Mutex
	byThing map[string][]Status
}

func (s *statusLog) add(topic string, payload []byte) {
	var st Status
	if json.Unmarshal(payload, &st) != nil {
		st.State = "unreadable: " + string(payload)
	}
	thing := strings.TrimSuffix(strings.TrimPrefix(topic, "edgecam/"), "/status")
	s.mu.Lock()
	s.byThing[thing] = append(s.byThing[thing], st)
	s.mu.Unlock()
}

func (s *statusLog) running() map[string]Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Status{}
	for thing, sts := range s.byThing {
		for _, st := range sts {
			if st.State == "running" {
				out[thing] = st
			}
		}
	}
	return out
}

func options(t testing.TB, c *localcloud.Cloud, devices int, prefix string) Options {
	t.Helper()
	claim, err := tls.LoadX509KeyPair(c.Paths().ClaimCert, c.Paths().ClaimKey)
	require.NoError(t, err)
	caPEM, err := os.ReadFile(c.Paths().CA)
	require.NoError(t, err)
	return Options{
		Devices: devices, Endpoint: c.MQTTEndpoint(), RootCAs: c.CAPool(), CAPEM: caPEM, ClaimCert: claim,
		Template: c.Template(), SerialPrefix: prefix, Timeout: 30 * time.Second, StateDir: t.TempDir(), Version: "test",
	}
}

func serials(prefix string, n int) []string {
	o := Options{Devices: n, SerialPrefix: prefix}
	return o.Serials()
}

// checkFleet requires every device of the report to be registered in the cloud with its own
// active certificate, and its status to have reached the broker.
func checkFleet(t *testing.T, c *localcloud.Cloud, sl *statusLog, rep *Report) {
	t.Helper()
	certs := map[string]string{}
	for _, r := range rep.Results {
		require.True(t, r.OK(), "device %s failed in %s: %v", r.Serial, r.Phase, r.Err)
		require.Equal(t, r.Serial, r.Thing, "localcloud's template names the thing after its serial")
		thing, ok := c.Thing(r.Thing)
		require.True(t, ok, "thing %s not registered", r.Thing)
		require.Equal(t, []string{r.CertificateID}, thing.Certificates)
		require.Equal(t, r.Serial, thing.Attributes["SerialNumber"])
		cert, ok := c.Certificate(r.CertificateID)
		require.True(t, ok)
		require.Equal(t, localcloud.StatusActive, cert.Status)
		require.Equal(t, []string{r.Thing}, cert.Things)
		require.NotContains(t, certs, r.CertificateID, "devices %s and %s share a certificate", certs[r.CertificateID], r.Serial)
		certs[r.CertificateID] = r.Serial
	}
	// The broker acknowledged each status; its observer sees it on its own goroutine.
	require.Eventually(t, func() bool { return len(sl.running()) == len(rep.Results) }, 30*time.Second, 20*time.Millisecond,
		"status messages received for %d of %d things", len(sl.running()), len(rep.Results))
	for thing, st := range sl.running() {
		require.Equal(t, thing, st.ThingName)
		require.Equal(t, "test", st.Version)
	}
}

func TestRunProvisionsEveryDevice(t *testing.T) {
	const n = 40
	tests := []struct {
		name        string
		rate        float64
		concurrency int
	}{
		{"paced at 200 devices/s", 200, 0},
		{"unlimited rate, 8 in flight", 0, 8},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("lt%d-", i)
			c, sl := startCloud(t, serials(prefix, n))
			opts := options(t, c, n, prefix)
			opts.Rate, opts.Concurrency = tt.rate, tt.concurrency
			var progress sync.Map
			opts.Progress = func(r Result) { progress.Store(r.Serial, r.OK()) }

			rep, err := Run(context.Background(), opts)
			require.NoError(t, err)
			require.Equal(t, n, rep.Devices)
			require.Equal(t, n, rep.OK, "failures: %+v", rep.Failures)
			require.Zero(t, rep.Failed)
			require.Empty(t, rep.Failures)
			require.Len(t, rep.Results, n)
			for _, p := range []Percentiles{rep.Provision, rep.Connect, rep.Status, rep.Total} {
				require.Equal(t, n, p.Count)
				require.Positive(t, p.P50)
				require.LessOrEqual(t, p.P50, p.P90)
				require.LessOrEqual(t, p.P90, p.P99)
				require.LessOrEqual(t, p.P99, p.Max)
			}
			require.Positive(t, rep.Throughput)
			require.Positive(t, rep.StartRate)
			count := 0
			progress.Range(func(_, ok any) bool { require.True(t, ok.(bool)); count++; return true })
			require.Equal(t, n, count)

			checkFleet(t, c, sl, rep)
			var things []string
			for _, th := range c.Things() {
				if strings.HasPrefix(th, prefix) {
					things = append(things, th)
				}
			}
			require.Equal(t, serials(prefix, n), things)

			var text bytes.Buffer
			require.NoError(t, rep.WriteText(&text))
			require.Contains(t, text.String(), fmt.Sprintf("%d ok, 0 failed", n))
			require.Contains(t, text.String(), "failures:   none")
			data, err := json.Marshal(rep)
			require.NoError(t, err)
			var back map[string]any
			require.NoError(t, json.Unmarshal(data, &back))
			require.EqualValues(t, n, back["ok"])
			require.Contains(t, back["provision"], "p99Ms")
		})
	}
}

// A pre-provisioning hook that refuses some serial numbers: those devices fail in the
// provision phase, grouped under the hook's rejection, and the others are unaffected.
func TestRunGroupsHookRejections(t *testing.T) {
	const n, prefix = 12, "hook-"
	all := serials(prefix, n)
	var allowed, refused []string
	for i, s := range all {
		if i%3 == 0 {
			refused = append(refused, s)
		} else {
			allowed = append(allowed, s)
		}
	}
	c, sl := startCloud(t, allowed)
	opts := options(t, c, n, prefix)
	opts.Attempts = 3 // a rejection is final: no retries

	rep, err := Run(context.Background(), opts)
	require.NoError(t, err)
	require.Equal(t, len(allowed), rep.OK)
	require.Equal(t, len(refused), rep.Failed)
	require.Len(t, rep.Failures, 1, "one group for one reason: %+v", rep.Failures)
	g := rep.Failures[0]
	require.Equal(t, PhaseProvision, g.Phase)
	require.Equal(t, len(refused), g.Count)
	require.Contains(t, g.Message, "RegisterThing rejected: statusCode 403, errorCode AccessDenied")
	require.Contains(t, g.Message, "pre provisioning hook rejecting the request")
	require.Contains(t, g.Message, "refused serial <serial>", "the serial number is taken out so that the devices group")
	require.Subset(t, refused, g.Serials)
	require.Len(t, g.Serials, min(len(refused), maxGroupSerials))

	var ok Report
	for _, r := range rep.Results {
		if r.OK() {
			ok.Results = append(ok.Results, r)
		} else {
			require.Contains(t, refused, r.Serial)
			_, registered := c.Thing(r.Serial)
			require.False(t, registered, "refused device %s was registered", r.Serial)
		}
	}
	checkFleet(t, c, sl, &ok)

	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	require.Contains(t, text.String(), fmt.Sprintf("%d × provision: RegisterThing rejected", len(refused)))
}

func TestRunFailuresByPhase(t *testing.T) {
	c, _ := startCloud(t, serials("x-", 3))
	tests := []struct {
		name   string
		adjust func(*Options)
		phase  string
		want   string
	}{
		{"unknown template", func(o *Options) { o.Template = "no-such-template" }, PhaseProvision, "check that provisioning template \"no-such-template\" exists"},
		{"nothing listening", func(o *Options) { o.Endpoint = "127.0.0.1:1"; o.Timeout = 3 * time.Second }, PhaseProvision, "connect with the claim certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := options(t, c, 3, "x-")
			tt.adjust(&opts)
			rep, err := Run(context.Background(), opts)
			require.NoError(t, err)
			require.Equal(t, 3, rep.Failed)
			require.Len(t, rep.Failures, 1, "%+v", rep.Failures)
			require.Equal(t, tt.phase, rep.Failures[0].Phase)
			require.Contains(t, rep.Failures[0].Message, tt.want)
			require.Equal(t, 3, rep.Failures[0].Count)
		})
	}
}

func TestValidate(t *testing.T) {
	good := func() Options {
		return Options{Devices: 1, Endpoint: "e:8883", ClaimCert: tls.Certificate{Certificate: [][]byte{{1}}}, Template: "t", SerialPrefix: "s-", StateDir: t.TempDir()}
	}
	require.NoError(t, func() *Options { o := good(); return &o }().Validate())
	tests := []struct {
		name   string
		adjust func(*Options)
		want   string
	}{
		{"no devices", func(o *Options) { o.Devices = 0 }, "simulate at least 1 device"},
		{"negative rate", func(o *Options) { o.Rate = -1 }, "rate -1"},
		{"negative concurrency", func(o *Options) { o.Concurrency = -2 }, "concurrency -2"},
		{"no endpoint", func(o *Options) { o.Endpoint = "" }, "no endpoint"},
		{"no claim", func(o *Options) { o.ClaimCert = tls.Certificate{} }, "no claim certificate"},
		{"no template", func(o *Options) { o.Template = "" }, "no provisioning template"},
		{"no prefix", func(o *Options) { o.SerialPrefix = "" }, "no serial prefix"},
		{"prefix with a path", func(o *Options) { o.SerialPrefix = "../x-" }, `serial prefix "../x-": use letters, digits`},
		{"prefix too long", func(o *Options) { o.SerialPrefix = strings.Repeat("a", 127); o.Devices = 10 }, "would be 129 characters"},
		{"missing state dir", func(o *Options) { o.StateDir = "/nonexistent/fleetload" }, "create it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.adjust(&o)
			err := o.Validate()
			require.ErrorContains(t, err, tt.want)
			_, err = Run(context.Background(), o)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestRunStopsWithContext(t *testing.T) {
	c, _ := startCloud(t, serials("stop-", 50))
	opts := options(t, c, 50, "stop-")
	opts.Rate = 0.5 // 100 s of starts: the first device finishes long before the last starts
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 50)
	opts.Progress = func(Result) { started <- struct{}{} }
	go func() {
		<-started // the first device finished: stop
		cancel()
	}()
	rep, err := Run(ctx, opts)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "of 50 devices")
	require.Less(t, rep.Devices, 50)
	require.Positive(t, rep.Devices)
	require.Len(t, rep.Results, rep.Devices)
}

func TestSerialsAndPercentiles(t *testing.T) {
	o := Options{Devices: 120, SerialPrefix: "cam-"}
	s := o.Serials()
	require.Equal(t, "cam-001", s[0])
	require.Equal(t, "cam-120", s[119])

	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[99-i] = time.Duration(i+1) * time.Millisecond
	}
	p := percentiles(ds)
	require.Equal(t, Percentiles{Count: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}, p)
	require.Equal(t, Percentiles{Count: 1, P50: time.Second, P90: time.Second, P99: time.Second, Max: time.Second}, percentiles([]time.Duration{time.Second}))
	require.Equal(t, Percentiles{}, percentiles(nil))

	r := Result{Serial: "cam-007", Thing: "thing-cam-007", Err: errors.New("thing-cam-007 (serial cam-007) refused")}
	require.Equal(t, "<thing> (serial <serial>) refused", failureMessage(r))
}
