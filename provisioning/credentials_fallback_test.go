package provisioning

import (
	"testing"
	"time"

	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

// TestCachedCredentialsOutliveAFailedRefresh: the credentials provider goes away before the
// cache's refresh point. Until the credentials expire the cache hands out the ones it has
// (a reconnect in that time still signs); after their expiry, or once a service refused
// them, it reports the provider's error.
func TestCachedCredentialsOutliveAFailedRefresh(t *testing.T) {
	cloud, _, id, cert := provisioned(t, localcloud.Options{CredentialLifetime: 6 * time.Second})
	p, err := NewIoTCredentials(CredentialsOptions{Endpoint: cloud.CredentialsEndpoint(), RoleAlias: cloud.RoleAlias(), ThingName: id.ThingName,
		Certificate: cert, RootCAs: cloud.CAPool(), Timeout: 2 * time.Second})
	require.NoError(t, err)
	cache := NewCredentialsCache(p, 4*time.Second)
	first, err := cache.Retrieve(testCtx(t))
	require.NoError(t, err)
	p2, err := NewIoTCredentials(CredentialsOptions{Endpoint: cloud.CredentialsEndpoint(), RoleAlias: cloud.RoleAlias(), ThingName: id.ThingName,
		Certificate: cert, RootCAs: cloud.CAPool(), Timeout: 2 * time.Second})
	require.NoError(t, err)
	expiring := NewCredentialsCache(p2, 4*time.Second)
	_, err = expiring.Retrieve(testCtx(t))
	require.NoError(t, err)
	issued, ok := cloud.Credentials(first.AccessKeyID)
	require.True(t, ok)
	require.NoError(t, cloud.Close()) // the provider is gone

	// Past the refresh point (first.Expires is brought forward by the refresh window).
	time.Sleep(time.Until(first.Expires) + 100*time.Millisecond)
	require.Positive(t, time.Until(issued.Expiration), "the machine was too slow to reach the window before the expiry")
	again, err := cache.Retrieve(testCtx(t))
	require.NoError(t, err, "the cached credentials serve while valid")
	require.Equal(t, first.AccessKeyID, again.AccessKeyID)

	// Refused by a service: never handed out again.
	cache.Invalidate()
	_, err = cache.Retrieve(testCtx(t))
	require.Error(t, err)

	// Expired: the provider's error.
	time.Sleep(time.Until(issued.Expiration) + 1100*time.Millisecond)
	_, err = expiring.Retrieve(testCtx(t))
	require.ErrorContains(t, err, "failed to refresh cached credentials")
}
