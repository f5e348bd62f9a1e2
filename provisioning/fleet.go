package provisioning

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/edgecam/edgecam/internal/backoff"
	"github.com/edgecam/edgecam/iot"
	"go.uber.org/zap"
)

// Provisioning methods.
const (
	MethodCSR  = "csr"  // CreateCertificateFromCsr: the key is made here and never leaves
	MethodKeys = "keys" // CreateKeysAndCertificate: AWS makes the key pair
)

// FleetOptions configure fleet provisioning by claim.
type FleetOptions struct {
	Endpoint  string
	RootCAs   *x509.CertPool
	CAPEM     []byte // kept with the identity for kvssink's ca-path
	ClaimCert tls.Certificate
	Template  string
	Serial    string
	// Parameters are extra template parameters; SerialNumber is always set to Serial.
	Parameters map[string]string
	Method     string
	KeyType    string
	// Timeout bounds each answer; Attempts bounds tries on transient failures.
	Timeout  time.Duration
	Attempts int
	// Backoff returns the wait before attempt n (n ≥ 1); nil means jittered exponential.
	Backoff func(n int) time.Duration
	Log     *zap.Logger
}

// RejectedError is a rejected fleet provisioning request, with AWS's own words and a hint.
type RejectedError struct {
	Operation    string
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
	Hint         string `json:"-"`
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("%s rejected: statusCode %d, errorCode %s, errorMessage %q — %s",
		e.Operation, e.StatusCode, e.ErrorCode, e.ErrorMessage, e.Hint)
}

// Temporary reports whether the same request may succeed later: throttling, server errors,
// and an ownership token that expired (the next attempt gets a new one).
func (e *RejectedError) Temporary() bool {
	return e.StatusCode == 429 || e.StatusCode >= 500 || e.ErrorCode == "InvalidCertificateOwnershipToken"
}

func hint(op string, e *RejectedError, opts FleetOptions) string {
	switch {
	case e.StatusCode == 403 && op == "RegisterThing":
		return fmt.Sprintf("the template's pre-provisioning hook refused serial %s: check that it is in the manufacturer's device list", opts.Serial)
	case e.StatusCode == 404:
		return fmt.Sprintf("check that provisioning template %q exists in this account and region (provisioning.template)", opts.Template)
	case e.ErrorCode == "InvalidCSR":
		return "the certificate signing request was refused: check provisioning.key_type"
	case e.ErrorCode == "InvalidCertificateOwnershipToken":
		return "the ownership token expired or is unknown; provisioning starts again"
	case e.StatusCode == 400:
		return "check provisioning.parameters against the template's parameters"
	case e.StatusCode == 401 || e.StatusCode == 403:
		return "check that the claim certificate's policy allows the fleet provisioning topics"
	case e.StatusCode == 429:
		return "throttled; trying again later"
	}
	return "AWS IoT had an internal failure; trying again later"
}

// errNoAnswer is a request that got no answer in time.
var errNoAnswer = errors.New("no answer")

// Provision runs fleet provisioning by claim and commits the new identity to the store.
// Transient failures are retried with jittered back-off; a rejection is returned as a
// *RejectedError that quotes AWS and says what to check.
func Provision(ctx context.Context, store *Store, opts FleetOptions) (*Identity, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Attempts < 1 {
		opts.Attempts = 1
	}
	if opts.Method == "" {
		opts.Method = MethodCSR
	}
	if opts.Backoff == nil {
		opts.Backoff = func(n int) time.Duration { return backoff.Delay(2*time.Second, time.Minute, n) }
	}
	var last error
	for attempt := 1; attempt <= opts.Attempts; attempt++ {
		if attempt > 1 {
			wait := opts.Backoff(attempt - 1)
			opts.Log.Warn("provisioning failed; trying again", zap.Error(last), zap.Int("attempt", attempt), zap.Duration("in", wait))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		id, err := provisionOnce(ctx, store, opts)
		if err == nil {
			return id, nil
		}
		last = err
		if ctx.Err() != nil || !temporary(err) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("provisioning failed after %d attempts: %w", opts.Attempts, last)
}

func temporary(err error) bool {
	var rej *RejectedError
	var ce *iot.ConnectError
	switch {
	case errors.As(err, &rej):
		return rej.Temporary()
	case errors.As(err, &ce):
		return ce.Temporary
	}
	return errors.Is(err, errNoAnswer) || errors.Is(err, context.DeadlineExceeded)
}

// exchange is one request/reply on the claim connection.
type exchange struct {
	conn    *iot.Conn
	timeout time.Duration
	replies chan iot.Message
}

func (x *exchange) call(ctx context.Context, op, topic string, req, resp any, opts FleetOptions) error {
	payload, err := json.Marshal(req)
	if err != nil {
		return err
	}
	// Drop replies to earlier, timed-out requests.
	for len(x.replies) > 0 {
		<-x.replies
	}
	if err := x.conn.Publish(ctx, topic, payload, 1); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	timer := time.NewTimer(x.timeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("%s: %w within %s on %s/accepted or /rejected", op, errNoAnswer, x.timeout, topic)
		case m := <-x.replies:
			if answered, err := decodeReply(op, topic, m, resp, opts); answered {
				return err
			}
		}
	}
}

// decodeReply reads a reply to the request published on topic: accepted answers are decoded
// into resp, rejected ones become a *RejectedError. answered is false for another topic.
func decodeReply(op, topic string, m iot.Message, resp any, opts FleetOptions) (answered bool, err error) {
	switch m.Topic {
	case topic + "/accepted":
		if err := json.Unmarshal(m.Payload, resp); err != nil {
			return true, fmt.Errorf("%s: unreadable answer: %w", op, err)
		}
		return true, nil
	case topic + "/rejected":
		rej := &RejectedError{Operation: op}
		if err := json.Unmarshal(m.Payload, rej); err != nil {
			return true, fmt.Errorf("%s rejected with an unreadable answer %q", op, m.Payload)
		}
		rej.Hint = hint(op, rej, opts)
		return true, rej
	}
	return false, nil
}

type createAnswer struct {
	CertificateID             string `json:"certificateId"`
	CertificatePEM            string `json:"certificatePem"`
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
	PrivateKey                string `json:"privateKey"`
}

type registerAnswer struct {
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
	ThingName           string            `json:"thingName"`
}

func provisionOnce(ctx context.Context, store *Store, opts FleetOptions) (*Identity, error) {
	log := opts.Log
	conn, err := iot.Dial(ctx, iot.Options{
		Endpoint:       opts.Endpoint,
		RootCAs:        opts.RootCAs,
		Certificate:    opts.ClaimCert,
		ClientID:       opts.Serial,
		ConnectTimeout: opts.Timeout,
		Log:            log,
	})
	if err != nil {
		return nil, fmt.Errorf("connect with the claim certificate: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()

	createTopic := "$aws/certificates/create-from-csr/json"
	if opts.Method == MethodKeys {
		createTopic = "$aws/certificates/create/json"
	}
	registerTopic := "$aws/provisioning-templates/" + opts.Template + "/provision/json"
	x := &exchange{conn: conn, timeout: opts.Timeout, replies: make(chan iot.Message, 4)}
	for _, t := range []string{createTopic, registerTopic} {
		for _, suffix := range []string{"/accepted", "/rejected"} {
			conn.Handle(t+suffix, func(m iot.Message) {
				select {
				case x.replies <- m:
				default:
				}
			})
		}
	}
	// Subscribe before publishing: replies are not kept for absent subscribers.
	if err := conn.Subscribe(ctx, createTopic+"/accepted", createTopic+"/rejected", registerTopic+"/accepted", registerTopic+"/rejected"); err != nil {
		return nil, err
	}

	var created createAnswer
	var keyFile string
	switch opts.Method {
	case MethodCSR:
		key, name, err := store.PendingKey(opts.KeyType)
		if err != nil {
			return nil, err
		}
		keyFile = name
		der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: opts.Serial}}, key)
		if err != nil {
			return nil, fmt.Errorf("certificate signing request: %w", err)
		}
		csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		log.Info("requesting a device certificate (CreateCertificateFromCsr)", zap.String("serial", opts.Serial))
		if err := x.call(ctx, "CreateCertificateFromCsr", createTopic, map[string]string{"certificateSigningRequest": string(csr)}, &created, opts); err != nil {
			return nil, err
		}
	case MethodKeys:
		log.Info("requesting keys and a certificate (CreateKeysAndCertificate)", zap.String("serial", opts.Serial))
		if err := x.call(ctx, "CreateKeysAndCertificate", createTopic, struct{}{}, &created, opts); err != nil {
			return nil, err
		}
		if created.PrivateKey == "" {
			return nil, errors.New("CreateKeysAndCertificate: the answer has no privateKey")
		}
		if keyFile, err = store.SaveKey([]byte(created.PrivateKey)); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("provisioning method %q: use %s or %s", opts.Method, MethodCSR, MethodKeys)
	}
	if created.CertificatePEM == "" || created.CertificateOwnershipToken == "" {
		return nil, errors.New("certificate answer lacks certificatePem or certificateOwnershipToken")
	}
	if id, err := CertificateID([]byte(created.CertificatePEM)); err != nil || id != created.CertificateID {
		return nil, fmt.Errorf("certificate answer: certificateId %s does not match the certificate (%v)", created.CertificateID, err)
	}

	params := map[string]string{}
	for k, v := range opts.Parameters {
		params[k] = v
	}
	params["SerialNumber"] = opts.Serial
	var registered registerAnswer
	log.Info("registering the thing (RegisterThing)", zap.String("template", opts.Template), zap.String("certificate_id", created.CertificateID))
	if err := x.call(ctx, "RegisterThing", registerTopic, map[string]any{
		"certificateOwnershipToken": created.CertificateOwnershipToken,
		"parameters":                params,
	}, &registered, opts); err != nil {
		return nil, err
	}
	if registered.ThingName == "" {
		return nil, errors.New("RegisterThing answer has no thingName")
	}
	id := Identity{
		ThingName:           registered.ThingName,
		CertificateID:       created.CertificateID,
		CertificatePEM:      created.CertificatePEM,
		CAPEM:               string(opts.CAPEM),
		KeyFile:             keyFile,
		DeviceConfiguration: registered.DeviceConfiguration,
		Endpoint:            opts.Endpoint,
		Serial:              opts.Serial,
		ProvisionedAt:       time.Now().UTC(),
	}
	if err := store.Commit(id); err != nil {
		return nil, fmt.Errorf("save the new identity: %w", err)
	}
	log.Info("device provisioned", zap.String("thing", id.ThingName), zap.String("certificate_id", id.CertificateID))
	return &id, nil
}
