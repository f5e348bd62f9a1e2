package provisioning

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/internal/atomicfile"
	"go.uber.org/zap"
)

// KVSCredentialLine formats credentials the way kvssink's credential-path file holds them:
// CREDENTIALS <accessKeyId> <expiration ISO-8601> <secretAccessKey> <sessionToken>
func KVSCredentialLine(c aws.Credentials) string {
	return fmt.Sprintf("CREDENTIALS %s %s %s %s\n", c.AccessKeyID, c.Expires.UTC().Format(time.RFC3339), c.SecretAccessKey, c.SessionToken)
}

// KVSCredentialFile keeps kvssink's credential file fresh: it writes the current
// credentials (atomically, 0600) and rewrites the file before each expiry.
type KVSCredentialFile struct {
	Path string
	// Provider should not be a cache: the file needs the credentials' true expiry (an
	// aws.CredentialsCache reports its refresh time instead).
	Provider aws.CredentialsProvider
	// RefreshBefore is how long before expiry the file is rewritten.
	RefreshBefore time.Duration
	Log           *zap.Logger
	// OnUpdate, when set, is called after each successful write.
	OnUpdate func(aws.Credentials)
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

// Run keeps the file fresh until ctx ends. Failures are retried with back-off (up to one
// minute apart) while the old credentials last.
func (k *KVSCredentialFile) Run(ctx context.Context) error {
	log := k.Log
	if log == nil {
		log = zap.NewNop()
	}
	retry := time.Second
	for {
		c, err := k.Update(ctx)
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("kvssink credentials not refreshed", zap.Error(err), zap.Duration("retry_in", retry))
			wait, retry = retry, min(2*retry, time.Minute)
		} else {
			retry = time.Second
			wait = max(time.Until(c.Expires)-k.RefreshBefore, time.Second)
			if k.OnUpdate != nil {
				k.OnUpdate(c)
			}
			log.Debug("kvssink credentials written", zap.String("file", k.Path), zap.Time("expires", c.Expires), zap.Duration("next", wait))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
