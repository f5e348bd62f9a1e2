// Package localcloud stands in for every AWS endpoint edgecam talks to, in-process and on
// 127.0.0.1, so that the agent can be tried and tested without an AWS account: an MQTT 5
// broker with AWS IoT's fleet provisioning API and per-certificate policies, and the AWS IoT
// credentials provider. Its wire formats follow ../shared/WIRE-FORMATS.md to the letter.
// Only cmd and tests import it.
package localcloud

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgecam/edgecam/internal/atomicfile"
	"go.uber.org/zap"
)

// Defaults shared by the generated agent configuration and the endpoints.
const (
	DefaultRegion    = "us-east-1"
	DefaultTemplate  = "edgecam-fleet"
	DefaultRoleAlias = "edgecam-kvs"
	DefaultAccount   = "123456789012"
	// Ports the CLI uses, so that the generated agent configuration stays valid.
	DefaultMQTTPort        = 18883
	DefaultCredentialsPort = 18443
	DefaultKVSPort         = 18444
	DefaultTURNPort        = 18478
)

// Options configure a localcloud.
type Options struct {
	// Dir holds the CA, the claim certificate, the allow-list, the registry and the agent
	// configuration. It is created (0700) on first use.
	Dir string
	// Host is the address to listen on; default 127.0.0.1.
	Host string
	// MQTTPort and CredentialsPort; 0 picks free ports.
	MQTTPort, CredentialsPort int
	Region                    string
	Template                  string
	RoleAliases               []string
	// CredentialLifetime of issued credentials (AWS: 900 s to 43200 s, default 3600 s).
	CredentialLifetime time.Duration
	// TokenTTL of certificate ownership tokens (AWS: 1 hour).
	TokenTTL time.Duration
	// AllowSerials are written to a new allow-list (existing lists are kept as they are).
	AllowSerials []string
	// DeviceConfiguration is what RegisterThing returns ({{thing}} is the thing name).
	DeviceConfiguration map[string]string
	// KVSPort serves the Kinesis Video Streams signaling stand-in (control plane,
	// GetIceServerConfig and the signaling WebSocket; plain HTTP and TLS on the same port);
	// 0 picks a free port.
	KVSPort int
	// KVSChannel is the signaling channel created on first start and named in viewer.json
	// (default DefaultSignalingChannel); masters may create others.
	KVSChannel string
	// KVSICEServers are what GetIceServerConfig returns (default none: no TURN server here).
	KVSICEServers []ICEServerConfig
	// KVSClockSkew shifts the KVS stand-in's clock (signature checks and the Date header),
	// to test clock-skew correction.
	KVSClockSkew time.Duration
	// KVSChannelActivation is how long a new channel stays CREATING (default 500 ms).
	KVSChannelActivation time.Duration
	// TURN runs a TURN server (pion/turn, UDP, also answering STUN) whose time-limited
	// credentials GetIceServerConfig hands out, as KVS does; TURNPort 0 picks a free port.
	TURN     bool
	TURNPort int
	Log      *zap.Logger
}

// Paths are the files a localcloud keeps in its directory.
type Paths struct {
	CA, CAKey     string
	ClaimCert     string
	ClaimKey      string
	AllowList     string
	Registry      string
	AgentConfig   string
	ResponderCert string // client certificate for the responder on an external broker
	ResponderKey  string
	AgentStateDir string
	Viewer        string // viewer.json: the KVS viewer key pair and channel
	KVSChannels   string
	KVSStreams    string // kvs-streams.json: the KVS streams
	KVSData       string // kvs/streams/<stream>/: each stream's fragments
	// IssuedCredentials keeps the unexpired credentials handed out, across restarts.
	IssuedCredentials string
}

// Cloud is a running localcloud.
type Cloud struct {
	opts  Options
	paths Paths
	log   *zap.Logger
	ca    *authority
	reg   *registry
	creds *credentialStore
	fleet *fleetResponder

	allowMu sync.Mutex // serialises Allow's read-modify-write of the allow-list

	mu        sync.Mutex
	broker    *broker
	http      *http.Server
	kvs       *kvsServer
	mqttEP    string
	credsEP   string
	done      chan struct{}
	observers int
}

func pathsIn(dir string) Paths {
	j := func(n string) string { return filepath.Join(dir, n) }
	return Paths{
		CA: j("ca.pem"), CAKey: j("ca.key"), ClaimCert: j("claim.pem"), ClaimKey: j("claim.key"),
		AllowList: j("allowed-serials.txt"), Registry: j("registry.json"), AgentConfig: j("edgecam.yaml"),
		ResponderCert: j("responder.pem"), ResponderKey: j("responder.key"), AgentStateDir: j("agent-state"),
		Viewer: j("viewer.json"), KVSChannels: j("kvs-channels.json"),
		KVSStreams: j("kvs-streams.json"), KVSData: filepath.Join(dir, "kvs", "streams"),
		IssuedCredentials: j("issued-credentials.json"),
	}
}

// Open prepares dir (creating the CA, the claim certificate and the allow-list once) and
// loads the registry. Nothing listens until Start.
func Open(opts Options) (*Cloud, error) {
	if opts.Dir == "" {
		return nil, errors.New("localcloud: no directory given")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.Template == "" {
		opts.Template = DefaultTemplate
	}
	if len(opts.RoleAliases) == 0 {
		opts.RoleAliases = []string{DefaultRoleAlias}
	}
	if opts.CredentialLifetime == 0 {
		opts.CredentialLifetime = time.Hour
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.DeviceConfiguration == nil {
		opts.DeviceConfiguration = map[string]string{"kvsStreamName": "{{thing}}", "signalingChannelName": "{{thing}}"}
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("localcloud: %w", err)
	}
	c := &Cloud{opts: opts, paths: pathsIn(opts.Dir), log: opts.Log}
	creds, err := openCredentialStore(c.paths.IssuedCredentials)
	if err != nil {
		return nil, fmt.Errorf("localcloud: %w", err)
	}
	c.creds = creds
	if err := c.initFiles(); err != nil {
		return nil, fmt.Errorf("localcloud: %w", err)
	}
	reg, err := openRegistry(c.paths.Registry)
	if err != nil {
		return nil, fmt.Errorf("localcloud: %w", err)
	}
	c.reg = reg
	if err := c.registerClaim(); err != nil {
		return nil, fmt.Errorf("localcloud: %w", err)
	}
	c.fleet = newFleetResponder(FleetOptions{
		Template: opts.Template, Region: opts.Region, Account: DefaultAccount, TokenTTL: opts.TokenTTL,
		Hook: AllowListHook(c.allowed), DeviceConfiguration: opts.DeviceConfiguration,
	}, c.ca, c.reg)
	return c, nil
}

// initFiles creates the CA, claim and responder certificates and the allow-list once.
func (c *Cloud) initFiles() error {
	p := c.paths
	if _, err := os.Stat(p.CA); errors.Is(err, os.ErrNotExist) {
		ca, keyPEM, err := newAuthority()
		if err != nil {
			return err
		}
		c.ca = ca
		if err := atomicfile.Write(p.CAKey, keyPEM, 0o600); err != nil {
			return err
		}
		if err := atomicfile.Write(p.CA, ca.pem, 0o644); err != nil {
			return err
		}
		c.log.Info("created the local CA", zap.String("file", p.CA))
	} else {
		if c.ca, err = loadAuthority(p.CA, p.CAKey); err != nil {
			return err
		}
	}
	ca := c.ca
	for _, pair := range []struct{ cert, key, cn string }{
		{p.ClaimCert, p.ClaimKey, "edgecam claim certificate"},
		{p.ResponderCert, p.ResponderKey, "localcloud-responder"},
	} {
		if _, err := os.Stat(pair.cert); err == nil {
			continue
		}
		certPEM, keyPEM, err := ca.clientCert(pair.cn, false)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(pair.key, keyPEM, 0o600); err != nil {
			return err
		}
		if err := atomicfile.Write(pair.cert, certPEM, 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Stat(p.AllowList); errors.Is(err, os.ErrNotExist) {
		var b strings.Builder
		b.WriteString("# Serial numbers allowed to provision (one per line), checked by the pre-provisioning hook.\n")
		for _, s := range c.opts.AllowSerials {
			b.WriteString(s + "\n")
		}
		if err := atomicfile.Write(p.AllowList, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// registerClaim makes sure the claim certificate is registered and active.
func (c *Cloud) registerClaim() error {
	certPEM, err := os.ReadFile(c.paths.ClaimCert)
	if err != nil {
		return err
	}
	id, err := certificateIDFromPEM(certPEM)
	if err != nil {
		return err
	}
	if rec, ok := c.reg.cert(id); ok && rec.Status == StatusActive {
		return nil
	}
	return c.reg.addCert(CertRecord{ID: id, PEM: string(certPEM), Status: StatusActive, Claim: true})
}

// allowed reads the allow-list; it is read on every request so that it can be edited live.
func (c *Cloud) allowed() map[string]bool {
	out := map[string]bool{}
	f, err := os.Open(c.paths.AllowList)
	if err != nil {
		c.log.Warn("allow-list unreadable; refusing every serial", zap.Error(err))
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out[line] = true
		}
	}
	return out
}

// Allow adds a serial number to the allow-list.
func (c *Cloud) Allow(serial string) error {
	c.allowMu.Lock()
	defer c.allowMu.Unlock()
	data, err := os.ReadFile(c.paths.AllowList)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == serial {
			return nil
		}
	}
	return atomicfile.Write(c.paths.AllowList, append(data, []byte(serial+"\n")...), 0o644)
}

// Start listens and serves until ctx ends or Close is called.
func (c *Cloud) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return errors.New("localcloud: already started")
	}
	serverCert, err := c.serverCertificate()
	if err != nil {
		return err
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.ca.pool(),
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"x-amzn-mqtt-ca", "http/1.1"},
	}
	mqttLn, err := net.Listen("tcp", net.JoinHostPort(c.opts.Host, strconv.Itoa(c.opts.MQTTPort)))
	if err != nil {
		return fmt.Errorf("localcloud: MQTT listener: %w (another localcloud running? pick other ports)", err)
	}
	credsLn, err := net.Listen("tcp", net.JoinHostPort(c.opts.Host, strconv.Itoa(c.opts.CredentialsPort)))
	if err != nil {
		mqttLn.Close()
		return fmt.Errorf("localcloud: credentials listener: %w (another localcloud running? pick other ports)", err)
	}
	kvs, err := startKVS(kvsOptions{
		Addr: net.JoinHostPort(c.opts.Host, strconv.Itoa(c.opts.KVSPort)), ViewerFile: c.paths.Viewer, ChannelsFile: c.paths.KVSChannels, Region: c.opts.Region,
		StreamsFile: c.paths.KVSStreams, StreamsDir: c.paths.KVSData,
		Account: DefaultAccount, Channel: c.opts.KVSChannel, Activation: c.opts.KVSChannelActivation, Skew: c.opts.KVSClockSkew,
		ICE: c.opts.KVSICEServers, Issued: c.creds.Lookup, Log: c.log.Named("kvs"), TURNPort: turnPort(c.opts),
		TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
	})
	if err != nil {
		mqttLn.Close()
		credsLn.Close()
		return fmt.Errorf("localcloud: %w", err)
	}
	b, err := newBroker(mqttLn, tlsCfg, c.reg, c.fleet, c.log.Named("mqtt"))
	if err != nil {
		mqttLn.Close()
		credsLn.Close()
		kvs.close(context.Background())
		return err
	}
	c.kvs = kvs
	c.broker = b
	c.mqttEP = mqttLn.Addr().String()
	c.credsEP = credsLn.Addr().String()
	aliases := map[string]bool{}
	for _, a := range c.opts.RoleAliases {
		aliases[a] = true
	}
	// The credentials provider: the same mutual TLS as MQTT, with ServeTLS's own ALPN.
	credsTLS := tlsCfg.Clone()
	credsTLS.NextProtos = nil
	c.http = &http.Server{
		Handler:           &credentialsEndpoint{reg: c.reg, aliases: aliases, lifetime: c.opts.CredentialLifetime, store: c.creds, log: c.log.Named("credentials")},
		TLSConfig:         credsTLS,
		ReadHeaderTimeout: 10 * time.Second,
	}
	if err := b.serve(); err != nil {
		credsLn.Close()
		_ = b.close()
		kvs.close(context.Background())
		c.kvs, c.broker = nil, nil
		return fmt.Errorf("localcloud: MQTT broker: %w", err)
	}
	go func() { _ = c.http.ServeTLS(credsLn, "", "") }()
	// Motion events mark the recordings page's timeline.
	if err := b.observe(motionEventsFilter, motionEventsSubID, kvs.streams.motionEvent); err != nil {
		c.log.Warn("motion events will not show on the recordings page", zap.Error(err))
	}
	c.done = make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-c.done:
		}
	}()
	c.log.Info("localcloud listening", zap.String("mqtt", c.mqttEP), zap.String("credentials", c.credsEP), zap.String("kvs", "http://"+kvs.addr))
	return nil
}

// serverCertificate issues the endpoints' certificate for localhost and the listen host.
func (c *Cloud) serverCertificate() (tls.Certificate, error) {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if !slices.Contains(hosts, c.opts.Host) && c.opts.Host != "0.0.0.0" && c.opts.Host != "::" {
		hosts = append(hosts, c.opts.Host)
	}
	certPEM, keyPEM, err := c.ca.serverCert(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// Close stops serving.
func (c *Cloud) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		return nil
	}
	select {
	case <-c.done:
		return nil
	default:
	}
	close(c.done)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(c.http.Shutdown(shutdownCtx), c.broker.close(), c.kvs.close(shutdownCtx))
}

// MQTTEndpoint returns the broker's host:port.
func (c *Cloud) MQTTEndpoint() string { return c.mqttEP }

// CredentialsEndpoint returns the credentials provider's host:port.
func (c *Cloud) CredentialsEndpoint() string { return c.credsEP }

// Paths returns the files localcloud keeps.
func (c *Cloud) Paths() Paths { return c.paths }

// Region returns the region localcloud pretends to be.
func (c *Cloud) Region() string { return c.opts.Region }

// Template returns the fleet provisioning template name.
func (c *Cloud) Template() string { return c.opts.Template }

// RoleAlias returns the first role alias.
func (c *Cloud) RoleAlias() string { return c.opts.RoleAliases[0] }

// Things lists the registered things.
func (c *Cloud) Things() []string { return c.reg.thingNames() }

// Thing returns a registered thing.
func (c *Cloud) Thing(name string) (Thing, bool) { return c.reg.thing(name) }

// Certificate returns a registered certificate.
func (c *Cloud) Certificate(id string) (CertRecord, bool) { return c.reg.cert(id) }

// Credentials looks up credentials the credentials endpoint issued.
func (c *Cloud) Credentials(accessKeyID string) (IssuedCredentials, bool) {
	return c.creds.Lookup(accessKeyID)
}

// Observe calls fn for every message published on topics matching filter.
func (c *Cloud) Observe(filter string, fn func(topic string, payload []byte)) error {
	c.mu.Lock()
	b := c.broker
	c.observers++
	id := 100 + c.observers // subscription identifiers of inline observers
	c.mu.Unlock()
	if b == nil {
		return errors.New("localcloud: not started")
	}
	return b.observe(filter, id, fn)
}

// DisconnectClient drops an MQTT client, as a broker restart or network cut would.
func (c *Cloud) DisconnectClient(clientID string) bool {
	c.mu.Lock()
	b := c.broker
	c.mu.Unlock()
	return b != nil && b.disconnect(clientID)
}

func turnPort(o Options) int {
	if !o.TURN {
		return -1
	}
	return o.TURNPort
}

// STUNURL returns the STUN URL of localcloud's TURN server, or "" when TURN is off.
func (c *Cloud) STUNURL() string {
	k, err := c.kvsRunning()
	if err != nil || k.turn == nil {
		return ""
	}
	return "stun:" + k.turn.addr
}
