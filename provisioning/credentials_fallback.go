package provisioning

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"
)

// HandleFailToRefresh implements aws.HandleFailRefreshCredentialsCacheStrategy. The cache
// refreshes credentials refresh_before ahead of their expiry; when the credentials provider
// cannot be reached then (a network outage, the provider down), the credentials fetched
// last are handed out for as long as they are valid, so that a signaling reconnect or a new
// PutMedia connection in that time still works. The cache asks the provider again at its
// next Retrieve. Credentials a service refused (Invalidate) are never handed out again.
func (c *IoTCredentials) HandleFailToRefresh(_ context.Context, _ aws.Credentials, err error) (aws.Credentials, error) {
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	if !last.HasKeys() || !c.clock.Now().Before(last.Expires) {
		return aws.Credentials{}, err
	}
	c.log.Warn("the credentials provider cannot be reached: going on with the cached credentials until they expire",
		zap.Time("expires", last.Expires), zap.Error(err))
	return last, nil
}
