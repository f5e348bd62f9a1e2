package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/backoff"
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
	return provisioning.EnsureIdentity(ctx, store, func() (provisioning.FleetOptions, error) {
		p := cfg.Provisioning
		if !p.Enabled {
			return provisioning.FleetOptions{}, fmt.Errorf("device not provisioned (no identity in %s) and provisioning.enabled is false", store.Dir())
		}
		claim, err := tls.LoadX509KeyPair(p.ClaimCert, p.ClaimKey)
		if err != nil {
			return provisioning.FleetOptions{}, fmt.Errorf("claim certificate %s / key %s: %w — set provisioning.claim_cert and provisioning.claim_key", p.ClaimCert, p.ClaimKey, err)
		}
		pool, caPEM, err := rootCAs(cfg)
		if err != nil {
			return provisioning.FleetOptions{}, err
		}
		serial, err := Serial(cfg)
		if err != nil {
			return provisioning.FleetOptions{}, err
		}
		log.Info("provisioning the device by claim", zap.String("endpoint", cfg.IoT.Endpoint), zap.String("serial", serial), zap.String("template", p.Template))
		return provisioning.FleetOptions{
			Endpoint: cfg.IoT.Endpoint, RootCAs: pool, CAPEM: caPEM, ClaimCert: claim,
			Template: p.Template, Serial: serial, Parameters: p.Parameters,
			Method: p.Method, KeyType: p.KeyType, Timeout: p.Timeout, Attempts: p.Attempts,
			Log: log.Named("provisioning"),
		}, nil
	})
}

// device is a provisioned device as the cloud link uses it: its identity, where it is kept,
// what it proves itself with (its certificate and key) and the roots it trusts
// (iot.ca_cert), for AWS IoT Core, the credentials provider and KVS alike. Loaded once.
type device struct {
	id    *provisioning.Identity
	store *provisioning.Store
	cert  tls.Certificate
	pool  *x509.CertPool
}

func loadDevice(cfg config.Config, id *provisioning.Identity) (*device, error) {
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
	return &device{id: id, store: store, cert: cert, pool: pool}, nil
}

// ConnectDevice connects to AWS IoT Core with the device certificate, as the thing.
func ConnectDevice(ctx context.Context, cfg config.Config, id *provisioning.Identity, opts iot.Options, log *zap.Logger) (*iot.Conn, error) {
	dev, err := loadDevice(cfg, id)
	if err != nil {
		return nil, err
	}
	return dialDevice(ctx, cfg, dev, opts, log)
}

func dialDevice(ctx context.Context, cfg config.Config, dev *device, opts iot.Options, log *zap.Logger) (*iot.Conn, error) {
	opts.Endpoint = cfg.IoT.Endpoint
	opts.RootCAs = dev.pool
	opts.Certificate = dev.cert
	opts.ClientID = dev.id.ThingName
	opts.KeepAlive = cfg.IoT.KeepAlive
	opts.Log = log
	return iot.Dial(ctx, opts)
}

// cloudLink keeps the agent connected to AWS IoT: identity, the telemetry connection and
// the credentials. It retries with back-off on failure; video does not wait for it.
type cloudLink struct {
	a *Agent

	// first receives the outcome of the first attempt to provision and connect.
	first chan error
}

// run gets the device identity, then keeps the credentials, KVS recording and the MQTT
// telemetry connection going until ctx ends, each retried with back-off on failure.
func (l *cloudLink) run(ctx context.Context) {
	a := l.a
	log := a.log.Named("cloud")
	report := func(err error) {
		select {
		case l.first <- err:
		default:
		}
	}
	var dev *device
	for attempt := 0; ; attempt++ {
		id, fresh, err := EnsureIdentity(ctx, a.cfg, log)
		if err == nil {
			if fresh {
				log.Info("device provisioned", zap.String("thing", id.ThingName))
			}
			if dev, err = loadDevice(a.cfg, id); err == nil {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		report(err)
		if !l.wait(ctx, attempt, "device identity unavailable; video continues locally", err) {
			return
		}
	}
	a.setThing(dev.id.ThingName)
	queue := a.openEventQueue(dev.id.ThingName)

	// credsReady: the AWS credentials provider is set (live view needs no more);
	// fileReady: kvssink's credential file is written (only when kvssink reads it).
	credsReady, fileReady := make(chan struct{}), make(chan struct{})
	var workers sync.WaitGroup
	workers.Add(3)
	go func() {
		defer workers.Done()
		l.runLiveView(ctx, dev, credsReady)
	}()
	go func() {
		defer workers.Done()
		l.runCredentials(ctx, dev, credsReady, fileReady)
	}()
	go func() {
		defer workers.Done()
		l.startKVS(ctx, dev, fileReady)
	}()
	defer workers.Wait()

	for attempt := 0; ; attempt++ {
		err := l.session(ctx, dev, queue, report)
		if ctx.Err() != nil {
			return
		}
		report(err)
		if !l.wait(ctx, attempt, "MQTT session failed; video continues locally", err) {
			return
		}
	}
}

// wait sleeps a jittered, growing back-off after a failure; false when ctx ended.
func (l *cloudLink) wait(ctx context.Context, attempt int, msg string, err error) bool {
	d := backoff.Delay(5*time.Second, 5*time.Minute, attempt+1)
	l.a.log.Named("cloud").Error(msg, zap.Error(err), zap.Duration("retry_in", d))
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// session connects and runs telemetry until ctx ends; the connection delivers the event
// queue (nil: none) meanwhile.
func (l *cloudLink) session(ctx context.Context, dev *device, queue *iot.Queue, report func(error)) error {
	a := l.a
	cfg := a.cfg
	log := a.log.Named("cloud")
	statusTopic := "edgecam/" + dev.id.ThingName + "/status"
	publishStatus := func(ctx context.Context, conn *iot.Conn, state string) {
		payload := a.statusJSON(state)
		pubCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := conn.Publish(pubCtx, statusTopic, payload, 1); err != nil {
			log.Warn("status not published", zap.Error(err))
		}
	}
	opts := iot.Options{Will: &iot.Message{Topic: statusTopic, Payload: a.statusJSON("offline")}, Queue: queue}
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
	conn, err := dialDevice(ctx, cfg, dev, opts, log.Named("mqtt"))
	if err != nil {
		return err
	}
	a.setConn(conn)
	defer a.setConn(nil)
	report(nil)

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
	if queue != nil && conn.Connected() {
		// The last events go out before the connection closes; what is left goes out on
		// the next start.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		if err := queue.WaitEmpty(flushCtx); err != nil {
			log.Info("motion events left for the next connection", zap.Int("waiting", queue.Len()))
		}
		cancel()
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return conn.Close(closeCtx)
}

// needsCredentialFile reports whether kvssink reads the credential file: KVS recording is
// on (kvssink installed) with auth credential_file. Nothing else needs the file.
func needsCredentialFile(cfg config.Config, kvsWanted bool) bool {
	return kvsWanted && cfg.Recording.KVS.Auth == config.KVSAuthCredentialFile
}

// runCredentials sets up the AWS credentials (from the IoT credentials provider) when a
// credentials endpoint is set and closes credsReady; it then keeps kvssink's credential
// file fresh, when kvssink reads it, closing fileReady after the first write.
func (l *cloudLink) runCredentials(ctx context.Context, dev *device, credsReady, fileReady chan struct{}) {
	cfg := l.a.cfg
	log := l.a.log.Named("credentials")
	if cfg.Credentials.Endpoint == "" {
		return
	}
	p, err := provisioning.NewIoTCredentials(provisioning.CredentialsOptions{
		Endpoint: cfg.Credentials.Endpoint, RoleAlias: cfg.Credentials.RoleAlias, ThingName: dev.id.ThingName,
		Certificate: dev.cert, RootCAs: dev.pool, ReuseWhile: cfg.Credentials.RefreshBefore, Log: log,
	})
	if err != nil {
		log.Error("AWS credentials unavailable", zap.Error(err))
		return
	}
	l.a.setCredentials(provisioning.NewCredentialsCache(p, cfg.Credentials.RefreshBefore))
	close(credsReady)
	if !needsCredentialFile(cfg, l.a.kvsWanted) {
		return
	}
	var once sync.Once
	f := &provisioning.KVSCredentialFile{
		Path: cfg.KVSSinkCredentialFile(), Provider: p, RefreshBefore: cfg.Credentials.RefreshBefore, Log: log,
		OnUpdate: func(aws.Credentials) { once.Do(func() { close(fileReady) }) },
	}
	_ = f.Run(ctx)
}

// startKVS starts recording to Kinesis Video Streams once what kvssink needs is there.
func (l *cloudLink) startKVS(ctx context.Context, dev *device, fileReady chan struct{}) {
	a := l.a
	cfg := a.cfg
	if !a.kvsWanted {
		return
	}
	k := cfg.Recording.KVS
	if needsCredentialFile(cfg, a.kvsWanted) {
		select {
		case <-fileReady:
		case <-ctx.Done():
			return
		}
	}
	stream := k.StreamName
	if stream == "" {
		stream = dev.id.ThingName
	}
	rec, err := a.newKVSRecorder(ctx, dev, stream)
	if err != nil {
		a.log.Error("KVS recording not started", zap.Error(err))
		return
	}
	a.log.Info("recording to Kinesis Video Streams", zap.String("stream", stream), zap.String("region", cfg.AWS.Region), zap.String("mode", cfg.Recording.Mode))
	a.mu.Lock()
	a.kvssink = &kvssinkRun{rec: rec, stream: stream}
	a.mu.Unlock()
	if cfg.Recording.Mode == config.RecordMotion {
		a.mu.Lock()
		a.gated = append(a.gated, rec)
		a.mu.Unlock()
		return
	}
	a.startRecorder(rec, a.recorderSub(rec.Name(), time.Time{}))
}

// Credentials returns the AWS credentials provider once the device has its identity.
func (a *Agent) Credentials() aws.CredentialsProvider {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creds
}
