//go:build !nolocalcloud

package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgecam/edgecam/localcloud"
	"github.com/edgecam/edgecam/provisioning"
	"github.com/edgecam/edgecam/provisioning/fleetload"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type loadtestFlags struct {
	devices      int
	rate         float64
	concurrency  int
	timeout      time.Duration
	attempts     int
	serialPrefix string
	devicesDir   string
	jsonOut      bool

	// A localcloud of its own (default), or one running elsewhere.
	dir string
	// A real endpoint.
	endpoint  string
	ca        string
	claimCert string
	claimKey  string
	template  string
	params    map[string]string
	method    string
	keyType   string
}

func newLoadtestCmd(g *globals) *cobra.Command {
	f := &loadtestFlags{}
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Fleet load test: provision many simulated devices by claim, connect each as its thing, publish status",
		Long: "loadtest brings up --devices simulated devices, starting at most --rate a second with at\n" +
			"most --concurrency in flight. Each one makes its own key and certificate signing request,\n" +
			"provisions by claim (CreateCertificateFromCsr, RegisterThing) with the agent's own code,\n" +
			"connects with its new certificate as its thing and publishes its status on\n" +
			"edgecam/<thing>/status, waiting for the broker's PUBACK. It prints the rates, each phase's\n" +
			"latency percentiles and the failures grouped by message, and exits 1 if any device failed.\n" +
			"\n" +
			"Without --endpoint it starts a localcloud of its own (in --dir, else a temporary one) and\n" +
			"allows the devices' serial numbers. With --endpoint and --dir it targets a localcloud\n" +
			"running elsewhere from that directory (its CA, claim certificate and allow-list). With\n" +
			"--endpoint alone it is a load test of an AWS IoT account's provisioning template and\n" +
			"pre-provisioning hook:\n" +
			"  edgecam localcloud loadtest --devices 500 --rate 50\n" +
			"  edgecam localcloud loadtest --endpoint <prefix>-ats.iot.<region>.amazonaws.com \\\n" +
			"    --ca AmazonRootCA1.pem --claim-cert claim.pem --claim-key claim.key \\\n" +
			"    --template <template> --serial-prefix LOADTEST- --devices 100 --rate 10\n" +
			"Every device it provisions is a real thing with an active certificate: on AWS, delete them\n" +
			"afterwards (their serial numbers start with --serial-prefix).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd, g) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.devices, "devices", 100, "how many simulated devices to provision")
	fl.Float64Var(&f.rate, "rate", 50, "devices started per second (0: as fast as --concurrency allows)")
	fl.IntVar(&f.concurrency, "concurrency", 100, "most devices in flight at once")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each answer, connection and PUBACK")
	fl.IntVar(&f.attempts, "attempts", 1, "provisioning tries per device on transient failures (throttling, timeouts)")
	fl.StringVar(&f.serialPrefix, "serial-prefix", "", "serial numbers are this prefix and the device's number (default loadtest-<random>-)")
	fl.StringVar(&f.devicesDir, "devices-dir", "", "directory for the devices' identities (default a temporary one, removed afterwards)")
	fl.BoolVar(&f.jsonOut, "json", false, "print the report as JSON")
	fl.StringVar(&f.dir, "dir", "", "localcloud directory (default: a temporary localcloud of its own)")
	fl.StringVar(&f.endpoint, "endpoint", "", "MQTT endpoint to test, host[:port] (AWS: <prefix>-ats.iot.<region>.amazonaws.com)")
	fl.StringVar(&f.ca, "ca", "", "CA certificate of the endpoint (PEM; default the system's roots, or the localcloud's)")
	fl.StringVar(&f.claimCert, "claim-cert", "", "claim certificate (PEM)")
	fl.StringVar(&f.claimKey, "claim-key", "", "claim certificate's private key (PEM)")
	fl.StringVar(&f.template, "template", "", "fleet provisioning template (default localcloud's, "+localcloud.DefaultTemplate+")")
	fl.StringToStringVar(&f.params, "param", nil, "extra template parameter name=value (repeatable); SerialNumber is always set")
	fl.StringVar(&f.method, "method", provisioning.MethodCSR, "provisioning method: csr or keys")
	fl.StringVar(&f.keyType, "key-type", provisioning.KeyECDSAP256, "device key type for csr: ecdsa-p256 or rsa-2048")
	return cmd
}

// check says what is wrong with the flags.
func (f *loadtestFlags) check(cmd *cobra.Command) error {
	var errs []error
	if f.devices < 1 {
		errs = append(errs, fmt.Errorf("--devices %d: simulate at least 1 device", f.devices))
	}
	if f.rate < 0 {
		errs = append(errs, fmt.Errorf("--rate %g: give devices per second, or 0 for as fast as --concurrency allows", f.rate))
	}
	if f.concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency %d: allow at least 1 device in flight", f.concurrency))
	}
	if f.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: use a positive duration such as 30s", f.timeout))
	}
	if f.attempts < 1 {
		errs = append(errs, fmt.Errorf("--attempts %d: use at least 1", f.attempts))
	}
	if f.method != provisioning.MethodCSR && f.method != provisioning.MethodKeys {
		errs = append(errs, fmt.Errorf("--method %q: use %s or %s", f.method, provisioning.MethodCSR, provisioning.MethodKeys))
	}
	if f.keyType != provisioning.KeyECDSAP256 && f.keyType != provisioning.KeyRSA2048 {
		errs = append(errs, fmt.Errorf("--key-type %q: use %s or %s", f.keyType, provisioning.KeyECDSAP256, provisioning.KeyRSA2048))
	}
	if _, ok := f.params["SerialNumber"]; ok {
		errs = append(errs, errors.New("--param SerialNumber: each device's serial number is set from --serial-prefix; drop it"))
	}
	if f.endpoint == "" {
		for _, name := range []string{"ca", "claim-cert", "claim-key"} {
			if cmd.Flags().Changed(name) {
				errs = append(errs, fmt.Errorf("--%s needs --endpoint: without one, loadtest runs its own localcloud with its own certificates", name))
			}
		}
	} else if f.dir == "" {
		if f.claimCert == "" || f.claimKey == "" {
			errs = append(errs, errors.New("--endpoint needs the fleet's claim certificate: give --claim-cert and --claim-key (or --dir of the localcloud serving it)"))
		}
		if f.template == "" {
			errs = append(errs, errors.New("--endpoint needs --template, the fleet provisioning template's name"))
		}
	}
	return errors.Join(errs...)
}

// loadtestTarget is what the devices provision against.
type loadtestTarget struct {
	endpoint  string
	template  string
	pool      *x509.CertPool
	caPEM     []byte
	claim     tls.Certificate
	what      string // for people: the endpoint and where its certificates come from
	localOwn  bool
	localDir  string
	cleanup   func()
	allowFunc func(serials []string) error
}

func (f *loadtestFlags) run(cmd *cobra.Command, g *globals) error {
	if err := f.check(cmd); err != nil {
		return configError(err)
	}
	_, log, err := g.loadWithLogger(cmd, g.explicitConfig(cmd))
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush
	// Per-device info logs would drown the report; warnings (retries, refusals) stay.
	quiet := log.WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))
	if f.serialPrefix == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		f.serialPrefix = "loadtest-" + hex.EncodeToString(b) + "-"
	}
	if os.Getenv("GOGC") == "" {
		// Thousands of short-lived TLS connections on a small heap: collecting less often
		// cuts the run's CPU by about a sixth (measured), leaving more for the endpoint.
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()

	target, err := f.target(ctx, quiet.Named("localcloud"))
	if err != nil {
		return err
	}
	defer target.cleanup()

	devicesDir := f.devicesDir
	if devicesDir == "" {
		if devicesDir, err = os.MkdirTemp(tempBase(), "edgecam-loadtest-devices-"); err != nil {
			return fmt.Errorf("devices' directory: %w", err)
		}
		defer os.RemoveAll(devicesDir)
	} else if err := os.MkdirAll(devicesDir, 0o700); err != nil {
		return configError(fmt.Errorf("--devices-dir: %w", err))
	}
	opts := fleetload.Options{
		Devices: f.devices, Rate: f.rate, Concurrency: f.concurrency,
		Endpoint: target.endpoint, RootCAs: target.pool, CAPEM: target.caPEM, ClaimCert: target.claim,
		Template: target.template, SerialPrefix: f.serialPrefix, Parameters: f.params,
		Method: f.method, KeyType: f.keyType, Timeout: f.timeout, Attempts: f.attempts,
		StateDir: devicesDir, Version: version, Log: quiet,
	}
	if err := opts.Validate(); err != nil {
		return configError(err)
	}
	if target.allowFunc != nil {
		if err := target.allowFunc(opts.Serials()); err != nil {
			return fmt.Errorf("allow the devices' serial numbers in localcloud: %w", err)
		}
	}

	w, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	info := w
	if f.jsonOut {
		info = errw
	}
	rate := "unlimited"
	if f.rate > 0 {
		rate = fmt.Sprintf("%g/s", f.rate)
	}
	fmt.Fprintln(info, "edgecam fleet load test")
	fmt.Fprintf(info, "  endpoint:  %s\n", target.what)
	fmt.Fprintf(info, "  template:  %s (method %s, key %s)\n", target.template, f.method, f.keyType)
	fmt.Fprintf(info, "  devices:   %d, serial numbers %s (rate %s, at most %d in flight)\n", f.devices, opts.Serials()[0]+"…", rate, f.concurrency)
	fmt.Fprintf(info, "  identities in %s\n", devicesDir)

	var done, failed atomic.Int64
	opts.Progress = func(r fleetload.Result) {
		done.Add(1)
		if !r.OK() {
			failed.Add(1)
		}
	}
	progressDone := make(chan struct{})
	go func() {
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-tick.C:
				fmt.Fprintf(errw, "  … %d of %d devices done, %d failed\n", done.Load(), f.devices, failed.Load())
			}
		}
	}()
	cpu0 := cpuTime()
	rep, runErr := fleetload.Run(ctx, opts)
	close(progressDone)
	if rep == nil {
		return runErr
	}
	cpu := cpuTime() - cpu0

	if f.jsonOut {
		out := struct {
			Endpoint   string  `json:"endpoint"`
			Template   string  `json:"template"`
			Localcloud bool    `json:"localcloud"`
			CPUSeconds float64 `json:"cpuSeconds"`
			*fleetload.Report
		}{target.endpoint, target.template, target.localOwn, cpu.Seconds(), rep}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		if err := rep.WriteText(w); err != nil {
			return err
		}
		who := "this process (load generator)"
		if target.localOwn {
			who = "this process (load generator and localcloud together)"
		}
		if rep.Devices > 0 {
			fmt.Fprintf(w, "cpu:        %.2f s in %s, %.1f ms per device\n", cpu.Seconds(), who, float64(cpu.Microseconds())/1000/float64(rep.Devices))
		}
	}
	if runErr != nil {
		return runErr
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d of %d devices failed (see the failures above)", rep.Failed, rep.Devices)
	}
	return nil
}

// target opens what the devices provision against: a localcloud of its own, a localcloud
// running elsewhere (--endpoint with --dir), or a real endpoint.
func (f *loadtestFlags) target(ctx context.Context, log *zap.Logger) (*loadtestTarget, error) {
	t := &loadtestTarget{endpoint: f.endpoint, template: f.template, cleanup: func() {}}
	if f.endpoint != "" && f.dir == "" {
		claim, err := tls.LoadX509KeyPair(f.claimCert, f.claimKey)
		if err != nil {
			return nil, configError(fmt.Errorf("--claim-cert %s / --claim-key %s: %w", f.claimCert, f.claimKey, err))
		}
		t.claim = claim
		if f.ca != "" {
			if t.caPEM, err = os.ReadFile(f.ca); err != nil {
				return nil, configError(fmt.Errorf("--ca: %w", err))
			}
			t.pool = x509.NewCertPool()
			if !t.pool.AppendCertsFromPEM(t.caPEM) {
				return nil, configError(fmt.Errorf("--ca %s: no PEM certificate in it", f.ca))
			}
		}
		t.what = fmt.Sprintf("%s (claim certificate %s)", f.endpoint, f.claimCert)
		return t, nil
	}

	dir := f.dir
	if f.endpoint != "" {
		// Opening a directory that is not a localcloud's would make a new CA there, which the
		// running localcloud knows nothing of.
		if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err != nil {
			return nil, configError(fmt.Errorf("--dir %s has no localcloud CA (ca.pem): give the directory the running localcloud uses (edgecam localcloud --dir), or drop --dir and give --ca, --claim-cert, --claim-key and --template", dir))
		}
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "edgecam-loadtest-localcloud-"); err != nil {
			return nil, fmt.Errorf("localcloud directory: %w", err)
		}
	}
	cloud, err := localcloud.Open(localcloud.Options{Dir: dir, Log: log})
	if err != nil {
		if f.dir == "" {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	t.localDir = dir
	t.allowFunc = func(serials []string) error {
		for _, s := range serials {
			if err := cloud.Allow(s); err != nil {
				return err
			}
		}
		return nil
	}
	if f.endpoint == "" {
		if err := cloud.Start(ctx); err != nil {
			if f.dir == "" {
				os.RemoveAll(dir)
			}
			return nil, err
		}
		t.localOwn = true
		t.endpoint = cloud.MQTTEndpoint()
		t.cleanup = func() {
			cloud.Close()
			if f.dir == "" {
				os.RemoveAll(dir)
			}
		}
	}
	p := cloud.Paths()
	if t.claim, err = tls.LoadX509KeyPair(p.ClaimCert, p.ClaimKey); err != nil {
		t.cleanup()
		return nil, err
	}
	if t.caPEM, err = os.ReadFile(p.CA); err != nil {
		t.cleanup()
		return nil, err
	}
	t.pool = cloud.CAPool()
	if t.template == "" {
		t.template = cloud.Template()
	}
	if t.localOwn {
		t.what = fmt.Sprintf("%s (localcloud of its own in %s)", t.endpoint, dir)
	} else {
		t.what = fmt.Sprintf("%s (localcloud of %s; its allow-list gets the serial numbers)", t.endpoint, dir)
	}
	return t, nil
}

// tempBase is where throwaway device identities go: memory (/dev/shm) when there is one, as
// their fsyncs are the load generator's cost, not the endpoint's.
func tempBase() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", ".edgecam-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return os.TempDir()
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
