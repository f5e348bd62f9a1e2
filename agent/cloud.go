package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/iot"
	"github.com/edgecam/edgecam/provisioning"
	"go.uber.org/zap"
)

// rootCAs loads iot.ca_cert; empty means the system's roots (nil pool, no PEM).
func rootCAs(cfg config.Config) (*x509.CertPool, []byte, error) {
	if cfg.IoT.CACert == "" {
		return nil, nil, nil
	}
	pemData, err := os.ReadFile(cfg.IoT.CACert)
	if err != nil {
		return nil, nil, fmt.Errorf("iot.ca_cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, nil, fmt.Errorf("iot.ca_cert %s holds no PEM certificate", cfg.IoT.CACert)
	}
	return pool, pemData, nil
}

// Serial returns device.serial, or the serial detected on this machine.
func Serial(cfg config.Config) (string, error) {
	if cfg.Device.Serial != "" {
		return cfg.Device.Serial, nil
	}
	return provisioning.DetectSerial("/")
}

// EnsureIdentity returns the device identity from the state directory, provisioning the
// device by claim first when it has none. fresh reports whether it provisioned now.
func EnsureIdentity(ctx context.Context, cfg config.Config, log *zap.Logger) (id *provisioning.Identity, fresh bool, err error) {
	if cfg.IoT.Endpoint == "" {
		return nil, false, errors.New("iot.endpoint is not set: nothing to provision against")
	}
	store, err := provisioning.OpenStore(cfg.StateDir)
	if err != nil {
		return nil, false, err
	}
	id, err = store.Load()
	if err == nil || !errors.Is(err, provisioning.ErrNoIdentity) {
		return id, false, err
	}
	p := cfg.Provisioning
	if !p.Enabled {
		return nil, false, fmt.Errorf("device not provisioned (no identity in %s) and provisioning.enabled is false", store.Dir())
	}
	claim, err := tls.LoadX509KeyPair(p.ClaimCert, p.ClaimKey)
	if err != nil {
		return nil, false, fmt.Errorf("claim certificate %s / key %s: %w — set provisioning.claim_cert and provisioning.claim_key", p.ClaimCert, p.ClaimKey, err)
	}
	pool, caPEM, err := rootCAs(cfg)
	if err != nil {
		return nil, false, err
	}
	serial, err := Serial(cfg)
	if err != nil {
		return nil, false, err
	}
	log.Info("provisioning the device by claim", zap.String("endpoint", cfg.IoT.Endpoint), zap.String("serial", serial), zap.String("template", p.Template))
	id, err = provisioning.Provision(ctx, store, provisioning.FleetOptions{
		Endpoint: cfg.IoT.Endpoint, RootCAs: pool, CAPEM: caPEM, ClaimCert: claim,
		Template: p.Template, Serial: serial, Parameters: p.Parameters,
		Method: p.Method, KeyType: p.KeyType, Timeout: p.Timeout, Attempts: p.Attempts,
		Log: log.Named("provisioning"),
	})
	if err != nil {
		return nil, false, err
	}
	return id, true, nil
}

// ConnectDevice connects to AWS IoT Core with the device certificate, as the thing.
func ConnectDevice(ctx context.Context, cfg config.Config, id *provisioning.Identity, opts iot.Options, log *zap.Logger) (*iot.Conn, error) {
	store, err := provisioning.OpenStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	cert, err := store.TLSCertificate(id)
	if err != nil {
		return nil, err
	}
	pool, _, err := rootCAs(cfg)
	if err != nil {
		return nil, err
	}
	opts.Endpoint = cfg.IoT.Endpoint
	opts.RootCAs = pool
	opts.Certificate = cert
	opts.ClientID = id.ThingName
	opts.KeepAlive = cfg.IoT.KeepAlive
	opts.Log = log
	return iot.Dial(ctx, opts)
}

// credentialsFor returns the IoT credentials provider client for the device.
func credentialsFor(cfg config.Config, id *provisioning.Identity) (*provisioning.IoTCredentials, error) {
	store, err := provisioning.OpenStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	cert, err := store.TLSCertificate(id)
	if err != nil {
		return nil, err
	}
	pool, _, err := rootCAs(cfg)
	if err != nil {
		return nil, err
	}
	return provisioning.NewIoTCredentials(provisioning.CredentialsOptions{
		Endpoint: cfg.Credentials.Endpoint, RoleAlias: cfg.Credentials.RoleAlias, ThingName: id.ThingName,
		Certificate: cert, RootCAs: pool,
	})
}

// cloudLink keeps the agent connected to AWS IoT: identity, the telemetry connection and
// the credentials. It retries with back-off on failure; video does not wait for it.
type cloudLink struct {
	a *Agent

	// first receives the outcome of the first attempt to provision and connect.
	first chan error
}

// run connects and stays connected until ctx ends.
func (l *cloudLink) run(ctx context.Context) {
	a := l.a
	log := a.log.Named("cloud")
	report := func(err error) {
		select {
		case l.first <- err:
		default:
		}
	}
	for attempt := 0; ; attempt++ {
		err := l.session(ctx, report)
		if ctx.Err() != nil {
			return
		}
		report(err)
		wait := min(5*time.Minute, 5*time.Second<<min(attempt, 6))
		wait = wait/2 + rand.N(wait/2+1)
		log.Error("cloud link down; video continues locally", zap.Error(err), zap.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session provisions if needed, connects, and runs telemetry and credentials until ctx ends.
func (l *cloudLink) session(ctx context.Context, report func(error)) error {
	a := l.a
	cfg := a.cfg
	log := a.log.Named("cloud")
	id, fresh, err := EnsureIdentity(ctx, cfg, log)
	if err != nil {
		return err
	}
	if fresh {
		log.Info("device provisioned", zap.String("thing", id.ThingName))
	}
	a.setThing(id.ThingName)
	statusTopic := "edgecam/" + id.ThingName + "/status"
	publishStatus := func(ctx context.Context, conn *iot.Conn, state string) {
		payload := a.statusJSON(state)
		pubCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := conn.Publish(pubCtx, statusTopic, payload, 1); err != nil {
			log.Warn("status not published", zap.Error(err))
		}
	}
	opts := iot.Options{Will: &iot.Message{Topic: statusTopic, Payload: a.statusJSON("offline")}}
	if cfg.Telemetry.Enabled {
		// Reconnections announce themselves; the first connection's status is sent below.
		var connects atomic.Int32
		opts.OnConnect = func() {
			if connects.Add(1) > 1 {
				if c := a.deviceConn(); c != nil {
					publishStatus(ctx, c, "running")
				}
			}
		}
	}
	conn, err := ConnectDevice(ctx, cfg, id, opts, log.Named("mqtt"))
	if err != nil {
		return err
	}
	a.setConn(conn)
	defer a.setConn(nil)
	report(nil)

	done := make(chan struct{})
	defer func() { <-done }()
	credCtx, stopCreds := context.WithCancel(ctx)
	defer stopCreds()
	go func() {
		defer close(done)
		l.runCredentials(credCtx, id, log)
	}()

	if cfg.Telemetry.Enabled {
		publishStatus(ctx, conn, "running")
		tick := time.NewTicker(cfg.Telemetry.Interval)
		defer tick.Stop()
		for running := true; running; {
			select {
			case <-tick.C:
				publishStatus(ctx, conn, "running")
			case <-ctx.Done():
				running = false
			}
		}
		publishStatus(context.WithoutCancel(ctx), conn, "stopped")
	} else {
		<-ctx.Done()
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return conn.Close(closeCtx)
}

// runCredentials keeps kvssink's credential file fresh when a credentials endpoint is set.
func (l *cloudLink) runCredentials(ctx context.Context, id *provisioning.Identity, log *zap.Logger) {
	cfg := l.a.cfg
	if cfg.Credentials.Endpoint == "" {
		return
	}
	p, err := credentialsFor(cfg, id)
	if err != nil {
		log.Error("AWS credentials unavailable", zap.Error(err))
		return
	}
	l.a.setCredentials(provisioning.NewCredentialsCache(p, cfg.Credentials.RefreshBefore))
	f := &provisioning.KVSCredentialFile{Path: cfg.KVSSinkCredentialFile(), Provider: p, RefreshBefore: cfg.Credentials.RefreshBefore, Log: log.Named("credentials")}
	_ = f.Run(ctx)
}

// Credentials returns the AWS credentials provider once the device has its identity.
func (a *Agent) Credentials() aws.CredentialsProvider {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creds
}
