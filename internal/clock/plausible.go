package clock

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// WrongError says that the system clock cannot be right: it reads a time before something
// known to have happened already (this build, a certificate issued to the device).
type WrongError struct {
	Now   time.Time
	Floor time.Time
	// What happened at Floor, e.g. "this build of edgecam".
	What string
}

func (e *WrongError) Error() string {
	return fmt.Sprintf("the system clock reads %s, before %s (%s): the clock is wrong — set it or let NTP set it (timedatectl set-ntp true); TLS waits for a plausible clock",
		e.Now.UTC().Format(time.RFC3339), e.What, e.Floor.UTC().Format(time.RFC3339))
}

// Plausible returns a *WrongError when now is before Floor or before any of the given
// instants (each with what it is), nil otherwise.
func Plausible(now time.Time, after ...Instant) error {
	floor := Instant{At: Floor(), What: "this build of edgecam"}
	for _, a := range after {
		if a.At.After(floor.At) {
			floor = a
		}
	}
	if now.Before(floor.At) {
		return &WrongError{Now: now, Floor: floor.At, What: floor.What}
	}
	return nil
}

// Instant is a time something is known to have happened.
type Instant struct {
	At   time.Time
	What string
}

// CertificateTimeHint explains a certificate refused for its validity period as what it
// nearly always is on a device: a wrong clock. It returns "" for any other error.
func CertificateTimeHint(err error, now time.Time) string {
	var invalid x509.CertificateInvalidError
	if !errors.As(err, &invalid) || invalid.Reason != x509.Expired || invalid.Cert == nil {
		return ""
	}
	c := invalid.Cert
	switch {
	case now.Before(c.NotBefore):
		return fmt.Sprintf("the certificate %q is not valid yet: it starts at %s and the system clock reads %s — the device's clock is wrong (behind): set it or let NTP set it (timedatectl set-ntp true)",
			c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	default:
		return fmt.Sprintf("the certificate %q expired at %s and the system clock reads %s — renew the certificate, or, if the clock is ahead, set it or let NTP set it (timedatectl set-ntp true)",
			c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
}

// Skew is how far the server's clock (an HTTP Date header) is ahead of the local one,
// measured around a request sent at sent and answered at received (local clock). ok is
// false when the header is missing or unreadable.
func Skew(date string, sent, received time.Time) (skew time.Duration, ok bool) {
	if date == "" {
		return 0, false
	}
	server, err := time.Parse(time.RFC1123, date)
	if err != nil {
		return 0, false
	}
	mid := sent.Add(received.Sub(sent) / 2)
	return server.Sub(mid).Round(time.Second), true
}
