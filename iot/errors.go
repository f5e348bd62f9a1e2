package iot

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/edgecam/edgecam/internal/clock"
)

// ConnectError says why no connection came up and what to check.
type ConnectError struct {
	Endpoint string
	Cause    error
	Hint     string
	// Temporary is true when trying again later may help (network trouble, time-outs),
	// false when something must be fixed first (certificates, policies, names).
	Temporary bool
}

func (e *ConnectError) Error() string {
	msg := "MQTT connection to " + e.Endpoint + " failed"
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	if e.Hint != "" {
		msg += " — " + e.Hint
	}
	return msg
}

func (e *ConnectError) Unwrap() error { return e.Cause }

// explain turns the last connection failure into a ConnectError with a hint.
func explain(endpoint, clientID string, timeout time.Duration, err error) error {
	ce := &ConnectError{Endpoint: endpoint, Cause: err}
	var (
		wrongTime *clock.WrongError
		connack   *autopaho.ConnackError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		opErr     *net.OpError
	)
	switch {
	case err == nil:
		ce.Cause = fmt.Errorf("no connection within %s", timeout)
		ce.Hint = "check iot.endpoint and that the network reaches it"
		ce.Temporary = true
	case errors.As(err, &wrongTime):
		ce.Hint = "no TLS until the clock is set: the certificates cannot be checked against a wrong time"
		ce.Temporary = true
	case clock.CertificateTimeHint(err, time.Now()) != "":
		// A certificate "expired or not yet valid" on a device is nearly always its clock.
		ce.Hint = "the endpoint's server " + clock.CertificateTimeHint(err, time.Now())[len("the "):]
		ce.Temporary = true
	case errors.As(err, &connack):
		ce.Hint = fmt.Sprintf("the broker refused the session (reason 0x%02x): check that the certificate is ACTIVE and its policy allows iot:Connect for client ID %q",
			connack.ReasonCode, clientID)
	case errors.As(err, &unknownCA), errors.As(err, &invalid):
		ce.Hint = "the endpoint's server certificate is not trusted: check iot.ca_cert (AWS: AmazonRootCA1.pem)"
	case errors.As(err, &hostErr):
		ce.Hint = "the endpoint's server certificate is for another name: check iot.endpoint"
	case strings.Contains(err.Error(), "remote error: tls"):
		ce.Hint = "the endpoint rejected the client certificate: check that it is registered and ACTIVE, and was issued by a CA the endpoint trusts"
	case strings.Contains(err.Error(), "broken pipe"), strings.Contains(err.Error(), "connection reset"):
		// With TLS 1.3 the server checks the client certificate after the client considers
		// the handshake done, so a refused certificate shows up as a closed connection.
		ce.Hint = "the endpoint closed the connection after TLS: check that the client certificate is registered and ACTIVE and issued by a CA the endpoint trusts, then iot.endpoint"
		ce.Temporary = true
	case errors.As(err, &opErr):
		ce.Hint = "cannot reach the endpoint: check iot.endpoint, DNS and the firewall (port 8883, or 443 with ALPN)"
		ce.Temporary = true
	default:
		ce.Hint = "check iot.endpoint, iot.ca_cert and the certificate"
	}
	return ce
}
