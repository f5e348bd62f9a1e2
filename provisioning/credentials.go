package provisioning

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/internal/clock"
	"go.uber.org/zap"
)

// CredentialsOptions configure the AWS IoT credentials provider client.
type CredentialsOptions struct {
	// Endpoint is host[:port] (AWS: <prefix>.credentials.iot.<region>.amazonaws.com).
	Endpoint    string
	RoleAlias   string
	ThingName   string
	Certificate tls.Certificate
	RootCAs     *x509.CertPool
	Timeout     time.Duration
	// ReuseWhile: credentials fetched earlier are handed out again while more than this is
	// left of them (0: every Retrieve asks the provider). The kvssink file and the SDK's
	// cache then share one fetch per credential period instead of making one each.
	ReuseWhile time.Duration
	// Clock is the wall clock that judges how much is left of credentials (default the
	// system's).
	Clock clock.Clock
	Log   *zap.Logger
}

// IoTCredentials fetches temporary AWS credentials from the AWS IoT credentials provider
// with the device certificate (mutual TLS). It implements aws.CredentialsProvider; wrap
// it with NewCredentialsCache so that it is asked only near expiry.
type IoTCredentials struct {
	url        string
	thing      string
	client     *http.Client
	reuseWhile time.Duration
	clock      clock.Clock
	log        *zap.Logger

	mu   sync.Mutex // held while fetching, so that concurrent callers share one fetch
	last aws.Credentials
	skew time.Duration // the provider's clock minus ours, as last reported

	invMu       sync.Mutex
	invalidated chan struct{} // closed and replaced by Invalidate
}

// NewIoTCredentials returns a credentials provider client.
func NewIoTCredentials(opts CredentialsOptions) (*IoTCredentials, error) {
	if opts.Endpoint == "" {
		return nil, fmt.Errorf("no credentials endpoint: set credentials.endpoint")
	}
	if opts.RoleAlias == "" || opts.ThingName == "" {
		return nil, fmt.Errorf("credentials provider needs a role alias and a thing name")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	host := opts.Endpoint
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "443")
	}
	u := url.URL{Scheme: "https", Host: host, Path: "/role-aliases/" + url.PathEscape(opts.RoleAlias) + "/credentials"}
	return &IoTCredentials{
		url:         u.String(),
		thing:       opts.ThingName,
		reuseWhile:  opts.ReuseWhile,
		clock:       opts.Clock,
		log:         opts.Log,
		invalidated: make(chan struct{}),
		client: &http.Client{
			Timeout: opts.Timeout,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{
					Certificates: []tls.Certificate{opts.Certificate},
					RootCAs:      opts.RootCAs,
					MinVersion:   tls.VersionTLS12,
					Time:         opts.Clock.Now,
				},
				ForceAttemptHTTP2: true,
			},
		},
	}, nil
}

// CredentialsError is a refusal from the credentials provider.
type CredentialsError struct {
	Status    int
	ErrorType string // x-amzn-ErrorType
	Message   string
	Hint      string
}

func (e *CredentialsError) Error() string {
	msg := fmt.Sprintf("IoT credentials provider answered %d", e.Status)
	if e.ErrorType != "" {
		msg += " " + e.ErrorType
	}
	if e.Message != "" {
		msg += fmt.Sprintf(": %q", e.Message)
	}
	return msg + " — " + e.Hint
}

// Retrieve implements aws.CredentialsProvider.
func (c *IoTCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reuseWhile > 0 && c.last.HasKeys() && c.last.Expires.Sub(c.clock.Now()) > c.reuseWhile {
		return c.last, nil
	}
	cr, err := c.fetch(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	c.last = cr
	return cr, nil
}

// fetch asks the credentials provider for new credentials.
func (c *IoTCredentials) fetch(ctx context.Context) (aws.Credentials, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return aws.Credentials{}, err
	}
	req.Header.Set("x-amzn-iot-thingname", c.thing)
	sent := c.clock.Now()
	if err := clock.Plausible(sent); err != nil {
		return aws.Credentials{}, fmt.Errorf("IoT credentials provider: not asked: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if hint := clock.CertificateTimeHint(err, c.clock.Now()); hint != "" {
			return aws.Credentials{}, fmt.Errorf("IoT credentials provider %s: %w — %s", c.url, err, hint)
		}
		return aws.Credentials{}, fmt.Errorf("IoT credentials provider %s: %w — check credentials.endpoint and the network", c.url, err)
	}
	defer resp.Body.Close()
	c.checkSkew(resp.Header.Get("Date"), sent)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("IoT credentials provider: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var msg struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &msg)
		e := &CredentialsError{Status: resp.StatusCode, ErrorType: resp.Header.Get("x-amzn-ErrorType"), Message: msg.Message}
		switch {
		case msg.Message == "Invalid thing name passed":
			e.Hint = fmt.Sprintf("the certificate is not attached to thing %q", c.thing)
		case resp.StatusCode == http.StatusNotFound:
			e.Hint = "check credentials.role_alias: the role alias must exist in this account and region"
		case resp.StatusCode == http.StatusForbidden:
			e.Hint = "check that the certificate is ACTIVE and its policy allows iot:AssumeRoleWithCertificate on the role alias"
		case resp.StatusCode == http.StatusBadRequest:
			e.Hint = "check the role alias's IAM role and its trust policy (credentials.iot.amazonaws.com must be allowed to assume it)"
		default:
			e.Hint = "trying again later"
		}
		return aws.Credentials{}, e
	}
	var out struct {
		Credentials struct {
			AccessKeyID     string `json:"accessKeyId"`
			SecretAccessKey string `json:"secretAccessKey"`
			SessionToken    string `json:"sessionToken"`
			Expiration      string `json:"expiration"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return aws.Credentials{}, fmt.Errorf("IoT credentials provider: unreadable answer: %w", err)
	}
	cr := out.Credentials
	exp, err := time.Parse(time.RFC3339, cr.Expiration)
	if err != nil || cr.AccessKeyID == "" || cr.SecretAccessKey == "" {
		return aws.Credentials{}, fmt.Errorf("IoT credentials provider: incomplete answer (expiration %q)", cr.Expiration)
	}
	return aws.Credentials{
		AccessKeyID:     cr.AccessKeyID,
		SecretAccessKey: cr.SecretAccessKey,
		SessionToken:    cr.SessionToken,
		Source:          "AWSIoTCredentialsProvider",
		CanExpire:       true,
		Expires:         exp,
	}, nil
}

// maxSkew is how far the provider's clock may be from ours before the log says so: AWS
// refuses signatures more than 5 minutes off, and kvssink times its credentials by it.
const maxSkew = time.Minute

// checkSkew compares the provider's Date header with the local clock and says, once per
// change, when the device's clock is off.
func (c *IoTCredentials) checkSkew(date string, sent time.Time) {
	skew, ok := clock.Skew(date, sent, c.clock.Now())
	if !ok {
		return
	}
	big := skew > maxSkew || skew < -maxSkew
	was := c.skew > maxSkew || c.skew < -maxSkew
	c.skew = skew
	switch {
	case big:
		c.log.Warn("the system clock is off from the AWS IoT credentials provider's: AWS refuses requests signed more than 5 minutes off and kvssink times its credentials by this clock — set the clock or let NTP set it (timedatectl set-ntp true)",
			zap.Duration("provider_ahead_by", skew))
	case was:
		c.log.Info("the system clock agrees with the AWS IoT credentials provider's again", zap.Duration("provider_ahead_by", skew))
	}
}

// Invalidate drops the credentials kept for reuse, because a service refused them (after a
// restart of the issuer, a revocation): the next Retrieve fetches new ones, and whoever
// waits on Invalidated (the kvssink credential file) is woken.
func (c *IoTCredentials) Invalidate() {
	c.mu.Lock()
	c.last = aws.Credentials{}
	c.mu.Unlock()
	c.invMu.Lock()
	close(c.invalidated)
	c.invalidated = make(chan struct{})
	c.invMu.Unlock()
}

// Invalidated returns a channel that is closed at the next Invalidate.
func (c *IoTCredentials) Invalidated() <-chan struct{} {
	c.invMu.Lock()
	defer c.invMu.Unlock()
	return c.invalidated
}

// CredentialsCache caches credentials and refreshes them ahead of their expiry. Invalidate
// drops them, in the cache and in the provider under it, so that refused credentials are
// replaced at once rather than at the end of their period.
type CredentialsCache struct {
	*aws.CredentialsCache
	src aws.CredentialsProvider
}

// NewCredentialsCache caches credentials and refreshes them refreshBefore their expiry
// (with some jitter, so that a fleet does not refresh in step).
func NewCredentialsCache(p aws.CredentialsProvider, refreshBefore time.Duration) *CredentialsCache {
	return &CredentialsCache{
		CredentialsCache: aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = refreshBefore
			o.ExpiryWindowJitterFrac = 0.2
		}),
		src: p,
	}
}

// Invalidate drops the cached credentials, and those the provider keeps for reuse.
func (c *CredentialsCache) Invalidate() {
	if inv, ok := c.src.(interface{ Invalidate() }); ok {
		inv.Invalidate()
	}
	c.CredentialsCache.Invalidate()
}
