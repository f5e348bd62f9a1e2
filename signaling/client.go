package signaling

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"go.uber.org/zap"
)

// service is the SigV4 service name of the control plane, GetIceServerConfig and the
// signaling WebSocket.
const service = "kinesisvideo"

// ClientOptions configure a Client.
type ClientOptions struct {
	// Region of the channel, e.g. "eu-west-1". Required.
	Region string
	// Credentials sign every request; they are asked again for each connection, so a
	// provider that refreshes (aws.CredentialsCache) keeps a long-running master signed in.
	// When it implements Invalidator, credentials the service refuses are dropped and new
	// ones fetched at once.
	Credentials aws.CredentialsProvider
	// Endpoint overrides the control plane, e.g. localcloud's "http://127.0.0.1:18444".
	// Default: AWS's https://kinesisvideo.<region>.amazonaws.com.
	Endpoint string
	// HTTPClient carries the control-plane calls and the WebSocket handshake (a custom CA
	// goes in its Transport). It must speak HTTP/1.1 for the WebSocket. Default: a client
	// with a 30 s time-out.
	HTTPClient *http.Client
	// STUNURL is added to the ICE servers; default stun:stun.kinesisvideo.<region>.amazonaws.com:443.
	STUNURL string
	// DisableSTUN leaves the STUN server out (e.g. on a network without Internet access).
	DisableSTUN bool
	// ActiveTimeout bounds the wait for a new channel to become ACTIVE; default 2 min.
	ActiveTimeout time.Duration
	Log           *zap.Logger
}

// Client talks to the KVS signaling control plane and opens signaling WebSockets. It keeps
// the clock offset learnt from the service, so that its signatures stay valid on a device
// whose clock is off. It is safe for concurrent use.
type Client struct {
	opts   ClientOptions
	kv     *kinesisvideo.Client
	http   *http.Client
	signer *v4.Signer
	clock  *clock
	log    *zap.Logger
	// refusals: credentials the service refused are dropped (see checkRefusal).
	refusals refusals
}

// NewClient returns a Client; it does not contact the service.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Region == "" {
		return nil, errors.New("signaling: no AWS region given: set the region of the signaling channel")
	}
	if opts.Credentials == nil {
		return nil, errors.New("signaling: no AWS credentials provider given")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.STUNURL == "" {
		opts.STUNURL = fmt.Sprintf("stun:stun.kinesisvideo.%s.amazonaws.com:443", opts.Region)
	}
	if opts.ActiveTimeout == 0 {
		opts.ActiveTimeout = 2 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	c := &Client{opts: opts, http: opts.HTTPClient, signer: v4.NewSigner(), clock: &clock{}, log: opts.Log}
	c.kv = kinesisvideo.New(kinesisvideo.Options{
		Region:      opts.Region,
		Credentials: opts.Credentials,
		HTTPClient:  observingClient{http: opts.HTTPClient, clock: c.clock},
	}, func(o *kinesisvideo.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
	})
	return c, nil
}

// Region returns the client's region.
func (c *Client) Region() string { return c.opts.Region }

// ClockOffset returns the correction applied to the local clock when signing (server time
// minus local time), learnt from the service's Date header after a signature-time refusal.
func (c *Client) ClockOffset() time.Duration { return c.clock.Offset() }

// credentials asks the provider for the current credentials.
func (c *Client) credentials(ctx context.Context) (aws.Credentials, error) {
	creds, err := c.opts.Credentials.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("signaling: AWS credentials: %w — check the credentials provider (credentials.endpoint and role alias)", err)
	}
	return creds, nil
}
