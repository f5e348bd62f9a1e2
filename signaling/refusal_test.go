package signaling_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"github.com/edgecam/edgecam/localcloud"
	"github.com/edgecam/edgecam/provisioning"
	"github.com/edgecam/edgecam/signaling"
	"github.com/stretchr/testify/require"
)

// freePort returns a TCP port free on 127.0.0.1 now, so that a restarted localcloud can
// listen where the first one did.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestMasterAfterIssuerRestart: localcloud restarts having lost the credentials it issued,
// so the service refuses the master's cached ones (403 UnrecognizedClientException). The
// master drops them, fetches new ones from the credentials provider and is back within
// seconds, not at the end of the credentials' hour.
func TestMasterAfterIssuerRestart(t *testing.T) {
	const serial = "cam-refused-1"
	opts := localcloud.Options{Dir: t.TempDir(), AllowSerials: []string{serial},
		MQTTPort: freePort(t), CredentialsPort: freePort(t), KVSPort: freePort(t)}
	cloud, err := localcloud.Open(opts)
	require.NoError(t, err)
	require.NoError(t, cloud.Start(context.Background()))
	defer func() { cloud.Close() }()

	claim, err := tls.LoadX509KeyPair(cloud.Paths().ClaimCert, cloud.Paths().ClaimKey)
	require.NoError(t, err)
	store, err := provisioning.OpenStore(t.TempDir())
	require.NoError(t, err)
	id, err := provisioning.Provision(ctxT(t, time.Minute), store, provisioning.FleetOptions{
		Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), ClaimCert: claim, Template: cloud.Template(), Serial: serial, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	cert, err := store.TLSCertificate(id)
	require.NoError(t, err)
	p, err := provisioning.NewIoTCredentials(provisioning.CredentialsOptions{Endpoint: cloud.CredentialsEndpoint(), RoleAlias: cloud.RoleAlias(),
		ThingName: id.ThingName, Certificate: cert, RootCAs: cloud.CAPool(), ReuseWhile: 5 * time.Minute})
	require.NoError(t, err)
	creds := provisioning.NewCredentialsCache(p, 5*time.Minute)

	m, a, _, _ := runMaster(t, signaling.MasterOptions{
		Client:        newClient(t, cloud, signaling.ClientOptions{Credentials: creds}),
		Channel:       localcloud.DefaultSignalingChannel,
		CreateChannel: true,
	})
	before, err := creds.Retrieve(ctxT(t, 5*time.Second))
	require.NoError(t, err)

	// localcloud keeps what it issued across a restart (as AWS does); losing that file is
	// what makes the service refuse credentials that have not expired (as a revoked role would).
	require.NoError(t, cloud.Close())
	require.NoError(t, os.Remove(cloud.Paths().IssuedCredentials))
	cloud, err = localcloud.Open(opts)
	require.NoError(t, err)
	require.NoError(t, cloud.Start(context.Background()))
	restarted := time.Now()
	_, known := cloud.Credentials(before.AccessKeyID)
	require.False(t, known, "the restarted localcloud forgot the credentials it issued")

	require.Eventually(t, func() bool {
		s := m.Stats()
		return s.Connects >= 2 && s.State == signaling.StateConnected
	}, 20*time.Second, 20*time.Millisecond, "stats: %+v", m.Stats())
	t.Logf("connected again %s after the restart", time.Since(restarted).Round(time.Millisecond))
	after, err := creds.Retrieve(ctxT(t, 5*time.Second))
	require.NoError(t, err)
	require.NotEqual(t, before.AccessKeyID, after.AccessKeyID, "new credentials replaced the refused ones")
	_, known = cloud.Credentials(after.AccessKeyID)
	require.True(t, known)

	v := connectViewer(t, cloud, localcloud.DefaultSignalingChannel, "after-restart")
	offerAndWait(t, v, a)
}
