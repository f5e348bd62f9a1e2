package clock

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPlausible(t *testing.T) {
	issued := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		now   time.Time
		after []Instant
		want  string // "" when plausible
	}{
		{"a Pi booted at the epoch", time.Unix(0, 0), nil, "before this build of edgecam"},
		{"after the build", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil, ""},
		{"before the device certificate", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), []Instant{{issued, "the device certificate"}}, "before the device certificate (2030-01-01T00:00:00Z)"},
		{"after the device certificate", issued.Add(time.Hour), []Instant{{issued, "the device certificate"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Plausible(tt.now, tt.after...)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			var we *WrongError
			require.ErrorAs(t, err, &we)
			require.ErrorContains(t, err, tt.want)
			require.ErrorContains(t, err, "the clock is wrong")
		})
	}
}

func TestCertificateTimeHint(t *testing.T) {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: "endpoint"}, NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	err := x509.CertificateInvalidError{Cert: c, Reason: x509.Expired}
	require.Contains(t, CertificateTimeHint(err, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)), "not valid yet")
	require.Contains(t, CertificateTimeHint(err, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)), "clock is wrong")
	require.Contains(t, CertificateTimeHint(err, time.Date(2028, 6, 1, 0, 0, 0, 0, time.UTC)), "expired at 2027-01-01")
	require.Empty(t, CertificateTimeHint(x509.UnknownAuthorityError{}, time.Now()))
}

// TestUntilFollowsSteps: a wall-clock deadline follows a step of the clock within MaxNap.
func TestUntilFollowsSteps(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, step := range []time.Duration{30 * time.Minute, -30 * time.Minute} {
		f := NewFake(start)
		var steps []time.Duration
		done := make(chan bool, 1)
		armed := f.Armed()
		go func() {
			done <- Until(context.Background(), f, start.Add(time.Hour), func(s time.Duration) { steps = append(steps, s) })
		}()
		<-armed
		f.Step(step)
		for {
			select {
			case ok := <-done:
				require.True(t, ok)
				require.Equal(t, []time.Duration{step}, steps)
				require.InDelta(t, float64(time.Hour-step), float64(f.Elapsed()), float64(MaxNap))
				goto next
			default:
			}
			d, _ := f.NextTimer()
			armed = f.Armed()
			f.Advance(d)
			select {
			case <-armed:
			case ok := <-done:
				require.True(t, ok)
				require.InDelta(t, float64(time.Hour-step), float64(f.Elapsed()), float64(MaxNap))
				goto next
			}
		}
	next:
	}
}
