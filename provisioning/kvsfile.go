package provisioning

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/internal/atomicfile"
	"github.com/edgecam/edgecam/internal/backoff"
	"github.com/edgecam/edgecam/internal/clock"
	"go.uber.org/zap"
)

// KVSCredentialLine formats credentials the way kvssink's credential-path file holds them:
// CREDENTIALS <accessKeyId> <expiration ISO-8601> <secretAccessKey> <sessionToken>
func KVSCredentialLine(c aws.Credentials) string {
	return fmt.Sprintf("CREDENTIALS %s %s %s %s\n", c.AccessKeyID, c.Expires.UTC().Format(time.RFC3339), c.SecretAccessKey, c.SessionToken)
}

// Invalidation is implemented by a credentials provider that can be told its credentials
// were refused (IoTCredentials): the channel is closed at the next Invalidate.
type Invalidation interface {
	Invalidated() <-chan struct{}
}

// KVSCredentialFile keeps kvssink's credential file fresh: it writes the current
// credentials (atomically, 0600) and rewrites the file before each expiry.
//
// kvssink reads the expiration in the file against the system clock, so the rewrite is
// scheduled on the wall clock too, and read again at least every 30 s: a clock stepped by
// NTP (a Raspberry Pi has no real-time clock) moves the rewrite with it instead of leaving
// it hours late or early.
type KVSCredentialFile struct {
	Path string
	// Provider should not be a cache: the file needs the credentials' true expiry (an
	// aws.CredentialsCache reports its refresh time instead). When it implements
	// Invalidation, refused credentials are replaced in the file at once.
	Provider aws.CredentialsProvider
	// RefreshBefore is how long before expiry the file is rewritten.
	RefreshBefore time.Duration
	Log           *zap.Logger
	// OnUpdate, when set, is called after each successful write.
	OnUpdate func(aws.Credentials)
	// Clock is the wall clock and timers the schedule runs on (default the system's).
	Clock clock.Clock
}

// Update writes the file once and returns the credentials written.
func (k *KVSCredentialFile) Update(ctx context.Context) (aws.Credentials, error) {
	c, err := k.Provider.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	if err := atomicfile.Write(k.Path, []byte(KVSCredentialLine(c)), 0o600); err != nil {
		return aws.Credentials{}, fmt.Errorf("kvssink credential file: %w", err)
	}
	return c, nil
}

// Retry delays after a failed write: jittered, from 1 s doubling up to one minute.
const (
	kvsRetryFirst = time.Second
	kvsRetryMax   = time.Minute
)

// Run keeps the file fresh until ctx ends. Failures are retried with jittered back-off (up
// to one minute apart) while the old credentials last.
func (k *KVSCredentialFile) Run(ctx context.Context) error {
	log := k.Log
	if log == nil {
		log = zap.NewNop()
	}
	clk := k.Clock
	if clk == nil {
		clk = clock.Real
	}
	var invalidated func() <-chan struct{}
	if inv, ok := k.Provider.(Invalidation); ok {
		invalidated = inv.Invalidated
	}
	failures := 0
	for {
		var refused <-chan struct{}
		if invalidated != nil {
			refused = invalidated()
		}
		c, err := k.Update(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			wait := backoff.Delay(kvsRetryFirst, kvsRetryMax, failures)
			log.Warn("kvssink credentials not refreshed", zap.Error(err), zap.Duration("retry_in", wait))
			if !k.nap(ctx, clk, wait, refused) {
				return nil
			}
			continue
		}
		if k.OnUpdate != nil {
			k.OnUpdate(c)
		}
		due := c.Expires.Add(-k.RefreshBefore)
		now := clk.Now()
		if !now.Before(due) {
			// Brand-new credentials already due: the clock is ahead of the provider's (or
			// the credentials live shorter than RefreshBefore). Asking again every second
			// would not help; back off and look at the clock again.
			failures++
			wait := backoff.Delay(kvsRetryFirst, kvsRetryMax, failures)
			log.Warn("the new kvssink credentials already look expired by the system clock: the clock is probably ahead — set it or let NTP set it (timedatectl set-ntp true); kvssink will refuse them meanwhile",
				zap.Time("expires", c.Expires), zap.Time("clock", now), zap.Duration("retry_in", wait))
			if !k.nap(ctx, clk, wait, refused) {
				return nil
			}
			continue
		}
		failures = 0
		log.Debug("kvssink credentials written", zap.String("file", k.Path), zap.Time("expires", c.Expires), zap.Time("next", due))
		if !k.until(ctx, clk, due, refused, log) {
			return nil
		}
	}
}

// nap waits d of elapsed time, or until the credentials are refused; false when ctx ended.
func (k *KVSCredentialFile) nap(ctx context.Context, clk clock.Clock, d time.Duration, refused <-chan struct{}) bool {
	napCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-refused:
			cancel()
		case <-napCtx.Done():
		}
	}()
	clock.Sleep(napCtx, clk, d)
	return ctx.Err() == nil
}

// until waits until the wall clock reaches due (re-read at least every 30 s), or until the
// credentials are refused; false when ctx ended.
func (k *KVSCredentialFile) until(ctx context.Context, clk clock.Clock, due time.Time, refused <-chan struct{}, log *zap.Logger) bool {
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-refused:
			log.Info("kvssink credentials were refused; writing new ones")
			cancel()
		case <-waitCtx.Done():
		}
	}()
	clock.Until(waitCtx, clk, due, func(step time.Duration) {
		log.Info("the system clock was stepped; rescheduling the kvssink credential refresh",
			zap.Duration("step", step), zap.Time("refresh_at", due))
	})
	return ctx.Err() == nil
}
