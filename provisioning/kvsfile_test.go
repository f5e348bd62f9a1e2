package provisioning

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/internal/clock"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

// issuer stands in for the credentials provider's side of time: it issues credentials that
// live an hour by the true time (the fake clock's elapsed time from trueStart), whatever
// the device's clock reads. It can be made to fail.
type issuer struct {
	fake      *clock.Fake
	trueStart time.Time
	lifetime  time.Duration

	mu    sync.Mutex
	n     int
	fails int
}

func (i *issuer) Retrieve(context.Context) (aws.Credentials, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.fails > 0 {
		i.fails--
		return aws.Credentials{}, errors.New("credentials provider unreachable")
	}
	i.n++
	return aws.Credentials{AccessKeyID: fmt.Sprintf("ASIA%04d", i.n), SecretAccessKey: "s", SessionToken: "t", CanExpire: true,
		Expires: i.trueStart.Add(i.fake.Elapsed()).Add(i.lifetime)}, nil
}

// kvsFileRun runs a KVSCredentialFile on a fake clock and records the elapsed time of each
// write.
type kvsFileRun struct {
	fake   *clock.Fake
	mu     sync.Mutex
	writes []time.Duration
	wrote  chan struct{}
}

func startKVSFile(t *testing.T, fake *clock.Fake, p aws.CredentialsProvider) *kvsFileRun {
	t.Helper()
	r := &kvsFileRun{fake: fake, wrote: make(chan struct{}, 1000)}
	armed := fake.Armed()
	f := &KVSCredentialFile{Path: filepath.Join(t.TempDir(), "kvssink-credentials"), Provider: p, RefreshBefore: 5 * time.Minute, Clock: fake,
		OnUpdate: func(aws.Credentials) {
			r.mu.Lock()
			r.writes = append(r.writes, fake.Elapsed())
			r.mu.Unlock()
			r.wrote <- struct{}{}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	waitArmed(t, armed)
	return r
}

func waitArmed(t *testing.T, armed <-chan struct{}) {
	t.Helper()
	select {
	case <-armed:
	case <-time.After(10 * time.Second):
		t.Fatal("the credential file's schedule set no timer")
	}
}

// advanceTo lets time pass up to elapsed, timer by timer, waiting after each for the
// schedule to set its next timer.
func (r *kvsFileRun) advanceTo(t *testing.T, elapsed time.Duration) {
	t.Helper()
	for {
		now := r.fake.Elapsed()
		next, ok := r.fake.NextTimer()
		require.True(t, ok, "the schedule always waits on a timer")
		if now+next > elapsed {
			r.fake.Advance(elapsed - now)
			return
		}
		armed := r.fake.Armed()
		r.fake.Advance(next)
		waitArmed(t, armed)
	}
}

func (r *kvsFileRun) times() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.writes...)
}

// TestKVSCredentialFileSurvivesClockSteps: a device without a real-time clock starts 30 min
// off; NTP steps its clock right after 10 min. kvssink times the credentials by the device's
// clock, so the file must be rewritten 5 min before they expire by the corrected clock: 55
// min after the first write (within the 30 s the schedule sleeps at most), neither 30 min
// late nor 30 min early, and only once.
func TestKVSCredentialFileSurvivesClockSteps(t *testing.T) {
	trueStart := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		off    time.Duration // device clock minus true time at start
		stepAt time.Duration
	}{
		{"clock right", 0, 0},
		{"clock 30 min behind, stepped forward", -30 * time.Minute, 10 * time.Minute},
		{"clock 30 min ahead, stepped back", 30 * time.Minute, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := clock.NewFake(trueStart.Add(tt.off))
			r := startKVSFile(t, fake, &issuer{fake: fake, trueStart: trueStart, lifetime: time.Hour})
			require.Equal(t, []time.Duration{0}, r.times(), "written at once")
			if tt.stepAt > 0 {
				r.advanceTo(t, tt.stepAt)
				fake.Step(-tt.off)
			}
			r.advanceTo(t, 54*time.Minute+59*time.Second)
			require.Equal(t, []time.Duration{0}, r.times(), "not rewritten before 55 min")
			r.advanceTo(t, 55*time.Minute+clock.MaxNap)
			w := r.times()
			require.Len(t, w, 2, "rewritten once, by 55 min 30 s")
			require.GreaterOrEqual(t, w[1], 55*time.Minute)
		})
	}
}

// TestKVSCredentialFileClockFarAhead: a clock 2 h ahead makes brand-new one-hour credentials
// look expired. The file is not rewritten every second meanwhile (a jittered back-off up to
// a minute), and once NTP steps the clock back the normal schedule resumes.
func TestKVSCredentialFileClockFarAhead(t *testing.T) {
	trueStart := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(trueStart.Add(2 * time.Hour))
	r := startKVSFile(t, fake, &issuer{fake: fake, trueStart: trueStart, lifetime: time.Hour})
	r.advanceTo(t, 10*time.Minute)
	n := len(r.times())
	require.Less(t, n, 25, "at most about one write a minute while the clock is wrong, not one a second")
	require.Greater(t, n, 5, "still trying")
	fake.Step(-2 * time.Hour)
	r.advanceTo(t, 11*time.Minute)
	after := r.times()
	last := after[len(after)-1]
	r.advanceTo(t, last+54*time.Minute)
	require.Len(t, r.times(), len(after), "back on the normal schedule once the clock is right")
	r.advanceTo(t, last+55*time.Minute+clock.MaxNap)
	require.Len(t, r.times(), len(after)+1)
}

// TestKVSCredentialFileRetriesJittered: failures are retried after a jittered, doubling
// delay (1, 2, 4, 8, 16 s at most, each at least half of that), as the README says, not
// after exactly 1, 2, 4, 8 s.
func TestKVSCredentialFileRetriesJittered(t *testing.T) {
	trueStart := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var exact int
	for run := 0; run < 3; run++ {
		fake := clock.NewFake(trueStart)
		iss := &issuer{fake: fake, trueStart: trueStart, lifetime: time.Hour, fails: 5}
		r := startKVSFile(t, fake, iss)
		for i, bound := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second} {
			d, ok := fake.NextTimer()
			require.True(t, ok)
			require.GreaterOrEqual(t, d, bound/2, "retry %d", i+1)
			require.LessOrEqual(t, d, bound, "retry %d", i+1)
			if d == bound {
				exact++
			}
			armed := fake.Armed()
			fake.Advance(d)
			waitArmed(t, armed)
		}
		require.Len(t, r.times(), 1, "written after the fifth retry")
	}
	require.Less(t, exact, 15, "the delays are jittered")
}

// TestKVSCredentialFileRewrittenWhenRefused: credentials a service refused (Invalidate) are
// replaced in the file at once, not at the end of their hour.
func TestKVSCredentialFileRewrittenWhenRefused(t *testing.T) {
	cloud, _, id, cert := provisioned(t, localcloud.Options{})
	p, err := NewIoTCredentials(CredentialsOptions{Endpoint: cloud.CredentialsEndpoint(), RoleAlias: cloud.RoleAlias(), ThingName: id.ThingName,
		Certificate: cert, RootCAs: cloud.CAPool(), ReuseWhile: 5 * time.Minute})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "kvssink-credentials")
	written := make(chan aws.Credentials, 4)
	f := &KVSCredentialFile{Path: path, Provider: p, RefreshBefore: 5 * time.Minute, OnUpdate: func(c aws.Credentials) { written <- c }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	first := <-written
	require.Equal(t, first.AccessKeyID, readKVSFile(t, path)[1])
	p.Invalidate()
	select {
	case c := <-written:
		require.NotEqual(t, first.AccessKeyID, c.AccessKeyID, "new credentials, not the refused ones")
		require.Equal(t, c.AccessKeyID, readKVSFile(t, path)[1])
	case <-time.After(10 * time.Second):
		t.Fatal("the file was not rewritten after the credentials were refused")
	}
}
