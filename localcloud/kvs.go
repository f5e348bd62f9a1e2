package localcloud

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"
)

// The Kinesis Video Streams stand-in: the signaling control plane, GetIceServerConfig and
// the signaling WebSocket service, on one listener that speaks plain HTTP and TLS.
//
// Plain http:// and ws:// on loopback are the default: browsers treat localhost as a secure
// context, and the agent and AWS's SDKs take any control-plane endpoint. Clients that insist
// on TLS (AWS's JavaScript signaling client takes only wss:// endpoints) reach the same
// port over https:// with localcloud's CA, and GetSignalingChannelEndpoint then answers
// with wss:// and https:// endpoints.

// Paths of the data-plane endpoints GetSignalingChannelEndpoint hands out.
const (
	kvsWebSocketPath = "/signaling"     // the WSS endpoint
	kvsHTTPSPath     = "/signaling-api" // the HTTPS endpoint (…/v1/get-ice-server-config)
)

// Defaults of the KVS stand-in.
const (
	// DefaultSignalingChannel is created on first start and named in viewer.json until a
	// master connects to another channel.
	DefaultSignalingChannel = "edgecam"
	defaultActivation       = 500 * time.Millisecond
)

// ICEServerConfig is an entry of GetIceServerConfig's IceServerList.
type ICEServerConfig struct {
	URIs     []string // e.g. "turn:127.0.0.1:3478?transport=udp"
	Username string
	Password string
	TTL      time.Duration // default 300 s
}

// kvsServer is the running KVS stand-in.
type kvsServer struct {
	log        *zap.Logger
	region     string
	skew       atomic.Int64
	channels   *channelStore
	verifier   *sigV4Verifier
	router     *signalingRouter
	srv        *http.Server
	ln         *dualListener
	addr       string
	viewerPath string
	viewer     ViewerConfig

	turn *turnServer // nil unless Options.TURN

	streams *streamService // KVS streams: control plane, PutMedia, the read side

	mu  sync.Mutex
	ice []ICEServerConfig
}

// kvsOptions configure the stand-in.
type kvsOptions struct {
	Addr, Region, Account, Channel string
	// ViewerFile and ChannelsFile are where viewer.json and the channels are kept.
	ViewerFile, ChannelsFile string
	// StreamsFile keeps the KVS streams, StreamsDir their fragments.
	StreamsFile, StreamsDir string
	Activation, Skew        time.Duration
	ICE                     []ICEServerConfig
	TLS                     *tls.Config
	// TURN serves TURN and STUN on this UDP port of the listen host (-1: no TURN).
	TURNPort int
	// Issued finds credentials issued by the credentials endpoint.
	Issued func(accessKeyID string) (IssuedCredentials, bool)
	Log    *zap.Logger
}

// startKVS listens, loads the channels and the viewer key, and serves.
func startKVS(o kvsOptions) (*kvsServer, error) {
	if o.Activation == 0 {
		o.Activation = defaultActivation
	}
	if o.Channel == "" {
		o.Channel = DefaultSignalingChannel
	}
	k := &kvsServer{log: o.Log, region: o.Region, ice: o.ICE, viewerPath: o.ViewerFile}
	k.skew.Store(int64(o.Skew))
	var err error
	if k.channels, err = openChannelStore(o.ChannelsFile, o.Region, o.Account, o.Activation); err != nil {
		return nil, err
	}
	if _, ok := k.channels.named(o.Channel); !ok {
		if _, err := k.channels.create(o.Channel, 60, nil, k.now(), true); err != nil {
			return nil, fmt.Errorf("creating signaling channel %q: %w", o.Channel, err)
		}
	}
	akid, secret, err := loadViewerKey(k.viewerPath)
	if err != nil {
		return nil, err
	}
	k.verifier = newSigV4Verifier(o.Region, k.now, func(id string) (aws.Credentials, string, bool) {
		if id == akid {
			return aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret}, "viewer key", true
		}
		if c, ok := o.Issued(id); ok {
			return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}, "thing " + c.ThingName, true
		}
		return aws.Credentials{}, "", false
	})
	k.router = newSignalingRouter(o.Log.Named("signaling"), k.now, k.pointViewerAt)
	if k.streams, err = newStreamService(k, o.Log.Named("streams"), o.StreamsFile, o.StreamsDir, o.Region, o.Account, o.Activation, putMediaLimits{}); err != nil {
		return nil, err
	}

	raw, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("KVS listener: %w (another localcloud running? pick another port)", err)
	}
	k.ln = newDualListener(raw, o.TLS)
	k.addr = raw.Addr().String()
	k.viewer = ViewerConfig{Region: o.Region, ChannelName: o.Channel, ControlPlaneURL: "http://" + k.addr, AccessKeyID: akid, SecretAccessKey: secret}
	if err := writeViewerConfig(k.viewerPath, k.viewer); err != nil {
		k.ln.Close()
		return nil, err
	}
	if o.TURNPort >= 0 {
		host, _, _ := net.SplitHostPort(o.Addr)
		if k.turn, err = startTURN(host, o.TURNPort); err != nil {
			k.ln.Close()
			return nil, err
		}
	}
	k.srv = &http.Server{Handler: k.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = k.srv.Serve(k.ln) }()
	return k, nil
}

// now is the stand-in's clock: the real one plus the configured skew.
func (k *kvsServer) now() time.Time { return time.Now().Add(time.Duration(k.skew.Load())) }

func (k *kvsServer) iceServers() []ICEServerConfig {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]ICEServerConfig(nil), k.ice...)
}

// pointViewerAt names the channel of the master that connected last in viewer.json.
func (k *kvsServer) pointViewerAt(channel string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.viewer.ChannelName == channel {
		return
	}
	k.viewer.ChannelName = channel
	if err := writeViewerConfig(k.viewerPath, k.viewer); err != nil {
		k.log.Warn("could not update viewer.json", zap.Error(err))
	}
}

// handler routes the stand-in's paths; every answer carries the stand-in's Date.
func (k *kvsServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/describeSignalingChannel", k.controlPlane("DescribeSignalingChannel", func() any { return &describeChannelInput{} }, k.describeChannel))
	mux.Handle("/createSignalingChannel", k.controlPlane("CreateSignalingChannel", func() any { return &createChannelInput{} }, k.createChannel))
	mux.Handle("/getSignalingChannelEndpoint", k.controlPlane("GetSignalingChannelEndpoint", func() any { return &endpointInput{} }, k.getEndpoint))
	ice := k.controlPlane("GetIceServerConfig", func() any { return &iceConfigInput{} }, k.iceConfig)
	mux.Handle(kvsHTTPSPath+"/v1/get-ice-server-config", ice)
	mux.Handle("/v1/get-ice-server-config", ice)
	mux.HandleFunc(kvsWebSocketPath, k.connect)
	mux.Handle("/viewer/", k.viewerPage())
	k.streams.routes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		serviceError(http.StatusNotFound, "UnknownOperationException", "%s %s is not an operation of this endpoint", r.Method, r.URL.Path).write(w)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", k.now().UTC().Format(http.TimeFormat))
		w.Header().Set("x-amzn-RequestId", randomUUID())
		mux.ServeHTTP(w, r)
	})
}

// connect is the signaling WebSocket: ?X-Amz-ChannelARN=…[&X-Amz-ClientId=…] presigned.
func (k *kvsServer) connect(w http.ResponseWriter, r *http.Request) {
	principal, aerr := k.verifier.verifyPresign(r)
	if aerr != nil {
		k.log.Warn("signaling connection refused: bad signature", zap.String("error_type", aerr.Type), zap.String("message", aerr.Message))
		aerr.write(w)
		return
	}
	q := r.URL.Query()
	arn := q.Get("X-Amz-ChannelARN")
	if arn == "" {
		serviceError(http.StatusBadRequest, "InvalidArgumentException", "X-Amz-ChannelARN is required").write(w)
		return
	}
	c, aerr := k.findChannel("", arn)
	if aerr != nil {
		aerr.write(w)
		return
	}
	clientID := ""
	if q.Has("X-Amz-ClientId") {
		clientID = q.Get("X-Amz-ClientId")
		if !validViewerID(clientID) {
			serviceError(http.StatusBadRequest, "InvalidArgumentException", "X-Amz-ClientId must be 1 to 256 of [a-zA-Z0-9_.-] and must not start with AWS_").write(w)
			return
		}
	}
	k.log.Debug("signaling connection", zap.String("channel", c.Name), zap.String("principal", principal), zap.String("client_id", clientID))
	k.router.accept(w, r, c, clientID)
}

// close stops the listener and ends every signaling connection.
func (k *kvsServer) close(ctx context.Context) error {
	k.streams.close()
	err := k.srv.Shutdown(ctx)
	k.router.close()
	if k.turn != nil {
		_ = k.turn.close()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// kvsRunning returns the running stand-in, or an error before Start.
func (c *Cloud) kvsRunning() (*kvsServer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kvs == nil {
		return nil, errors.New("localcloud: not started")
	}
	return c.kvs, nil
}

// KVSEndpoint returns the KVS control plane's base URL, http://host:port (the same port
// answers https:// with localcloud's CA).
func (c *Cloud) KVSEndpoint() string {
	k, err := c.kvsRunning()
	if err != nil {
		return ""
	}
	return "http://" + k.addr
}

// KVSTLSEndpoint returns the KVS control plane's base URL over TLS, https://host:port.
func (c *Cloud) KVSTLSEndpoint() string {
	k, err := c.kvsRunning()
	if err != nil {
		return ""
	}
	return "https://" + k.addr
}

// ViewerConfig returns what DIR/viewer.json holds.
func (c *Cloud) ViewerConfig() (ViewerConfig, error) {
	k, err := c.kvsRunning()
	if err != nil {
		return ViewerConfig{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.viewer, nil
}

// ViewerConfigPath returns DIR/viewer.json.
func (c *Cloud) ViewerConfigPath() string { return c.paths.Viewer }

// SetKVSClockSkew shifts the KVS stand-in's clock, to test clock-skew correction.
func (c *Cloud) SetKVSClockSkew(d time.Duration) error {
	k, err := c.kvsRunning()
	if err != nil {
		return err
	}
	k.skew.Store(int64(d))
	return nil
}

// SetKVSICEServers replaces what GetIceServerConfig returns.
func (c *Cloud) SetKVSICEServers(servers []ICEServerConfig) error {
	k, err := c.kvsRunning()
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.ice = append([]ICEServerConfig(nil), servers...)
	k.mu.Unlock()
	return nil
}

// CreateSignalingChannel creates a channel (ACTIVE at once) unless it exists, and returns
// its ARN.
func (c *Cloud) CreateSignalingChannel(name string) (string, error) {
	k, err := c.kvsRunning()
	if err != nil {
		return "", err
	}
	if !channelNamePattern.MatchString(name) {
		return "", fmt.Errorf("localcloud: channel name %q: use 1 to 256 of [a-zA-Z0-9_.-]", name)
	}
	ch, err := k.channels.create(name, 60, nil, k.now(), true)
	if errors.Is(err, errChannelExists) {
		err = nil
	}
	return ch.ARN, err
}

// SignalingChannelARN returns the ARN of the channel called name.
func (c *Cloud) SignalingChannelARN(name string) (string, bool) {
	k, err := c.kvsRunning()
	if err != nil {
		return "", false
	}
	ch, ok := k.channels.named(name)
	return ch.ARN, ok
}

// SignalingPeers reports whether a master is connected to the channel, and which viewers.
func (c *Cloud) SignalingPeers(channel string) (master bool, viewers []string) {
	k, err := c.kvsRunning()
	if err != nil {
		return false, nil
	}
	return k.router.peers(channel)
}

// SignalingGoAway sends GO_AWAY to the channel's master; its connection is closed a minute
// later, as on AWS.
func (c *Cloud) SignalingGoAway(channel string) error {
	k, err := c.kvsRunning()
	if err != nil {
		return err
	}
	return k.router.goAway(channel, goAwayGrace)
}

// SignalingReconnectICEServer sends RECONNECT_ICE_SERVER to the channel's master.
func (c *Cloud) SignalingReconnectICEServer(channel string) error {
	k, err := c.kvsRunning()
	if err != nil {
		return err
	}
	return k.router.sendToMaster(channel, encodeServiceMessage(serviceMessage{MessageType: "RECONNECT_ICE_SERVER"}))
}

// DropSignalingMaster cuts the master's connection without a close frame, as a network
// failure or a service restart would.
func (c *Cloud) DropSignalingMaster(channel string) error {
	k, err := c.kvsRunning()
	if err != nil {
		return err
	}
	return k.router.dropMaster(channel)
}

// SendSignalingMasterRaw sends data as it is to the channel's master (to test how a client
// copes with malformed messages).
func (c *Cloud) SendSignalingMasterRaw(channel string, data []byte) error {
	k, err := c.kvsRunning()
	if err != nil {
		return err
	}
	return k.router.sendToMaster(channel, data)
}

// IssueCredentials issues temporary credentials for a thing as the credentials endpoint
// does, without the certificate exchange (for tests and tools).
func (c *Cloud) IssueCredentials(thingName string) IssuedCredentials {
	return c.creds.issue(thingName, c.opts.RoleAliases[0], c.opts.CredentialLifetime)
}
