package provisioning

import (
	"bufio"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

// provisioned returns a running localcloud and a device provisioned through it.
func provisioned(t *testing.T, opts localcloud.Options) (*localcloud.Cloud, *Store, *Identity, tls.Certificate) {
	t.Helper()
	cloud := startCloud(t, opts)
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	id, err := Provision(testCtx(t), store, fleetOptions(t, cloud))
	require.NoError(t, err)
	cert, err := store.TLSCertificate(id)
	require.NoError(t, err)
	return cloud, store, id, cert
}

func TestIoTCredentials(t *testing.T) {
	cloud, _, id, cert := provisioned(t, localcloud.Options{})
	claim, err := tls.LoadX509KeyPair(cloud.Paths().ClaimCert, cloud.Paths().ClaimKey)
	require.NoError(t, err)

	tests := []struct {
		name    string
		thing   string
		alias   string
		cert    tls.Certificate
		status  int
		message string
		hint    string
	}{
		{"valid", id.ThingName, cloud.RoleAlias(), cert, 200, "", ""},
		{"wrong thing name", "another-thing", cloud.RoleAlias(), cert, 403, "Invalid thing name passed", `not attached to thing "another-thing"`},
		{"unknown role alias", id.ThingName, "no-such-alias", cert, 404, "Role alias does not exist", "check credentials.role_alias"},
		{"claim certificate", id.ThingName, cloud.RoleAlias(), claim, 403, "Access Denied", "iot:AssumeRoleWithCertificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewIoTCredentials(CredentialsOptions{Endpoint: cloud.CredentialsEndpoint(), RoleAlias: tt.alias, ThingName: tt.thing, Certificate: tt.cert, RootCAs: cloud.CAPool()})
			require.NoError(t, err)
			c, err := p.Retrieve(testCtx(t))
			if tt.status != 200 {
				var ce *CredentialsError
				require.ErrorAs(t, err, &ce)
				require.Equal(t, tt.status, ce.Status)
				require.Equal(t, tt.message, ce.Message)
				require.NotEmpty(t, ce.ErrorType)
				require.Contains(t, err.Error(), tt.hint)
				return
			}
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(c.AccessKeyID, "ASIA"))
			require.NotEmpty(t, c.SecretAccessKey)
			require.NotEmpty(t, c.SessionToken)
			require.True(t, c.CanExpire)
			require.WithinDuration(t, time.Now().Add(time.Hour), c.Expires, 5*time.Second)
			issued, ok := cloud.Credentials(c.AccessKeyID)
			require.True(t, ok)
			require.Equal(t, c.SecretAccessKey, issued.SecretAccessKey)
		})
	}
}

func TestCredentialsCacheRefreshesEarly(t *testing.T) {
	cloud, _, id, cert := provisioned(t, localcloud.Options{CredentialLifetime: 5 * time.Second})
	p, err := NewIoTCredentials(CredentialsOptions{Endpoint: cloud.CredentialsEndpoint(), RoleAlias: cloud.RoleAlias(), ThingName: id.ThingName, Certificate: cert, RootCAs: cloud.CAPool()})
	require.NoError(t, err)
	cache := NewCredentialsCache(p, 3*time.Second)
	start := time.Now()
	first, err := cache.Retrieve(testCtx(t))
	require.NoError(t, err)
	again, err := cache.Retrieve(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, first.AccessKeyID, again.AccessKeyID, "served from the cache")
	// The cache hands out credentials whose Expires is already brought forward by its jittered
	// refresh window (3 s less up to 20 %): past it, the next Retrieve must fetch anew, while
	// the credentials themselves still have 2.4-3 s to live. (A fixed 2.5 s sleep from the
	// start fell before that point when the window's jitter and the expiry's whole seconds
	// left the first credentials 2.6 s.)
	time.Sleep(time.Until(first.Expires) + 100*time.Millisecond)
	later, err := cache.Retrieve(testCtx(t))
	require.NoError(t, err)
	require.NotEqual(t, first.AccessKeyID, later.AccessKeyID, "refreshed before expiry")
	require.Less(t, time.Since(start), 5*time.Second, "within the 5 s lifetime")
}

// TestCredentialsReusedWhileFresh: the kvssink file and the SDK's cache share one fetch.
func TestCredentialsReusedWhileFresh(t *testing.T) {
	cloud, _, id, cert := provisioned(t, localcloud.Options{CredentialLifetime: 5 * time.Second})
	p, err := NewIoTCredentials(CredentialsOptions{Endpoint: cloud.CredentialsEndpoint(), RoleAlias: cloud.RoleAlias(), ThingName: id.ThingName,
		Certificate: cert, RootCAs: cloud.CAPool(), ReuseWhile: 3 * time.Second})
	require.NoError(t, err)
	first, err := p.Retrieve(testCtx(t))
	require.NoError(t, err)
	again, err := p.Retrieve(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, first.AccessKeyID, again.AccessKeyID, "more than 3 s left: reused")
	time.Sleep(time.Until(first.Expires.Add(-3*time.Second)) + 100*time.Millisecond)
	later, err := p.Retrieve(testCtx(t))
	require.NoError(t, err)
	require.NotEqual(t, first.AccessKeyID, later.AccessKeyID, "3 s or less left: fetched again")
}

func readKVSFile(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	require.True(t, sc.Scan())
	fields := strings.Fields(sc.Text())
	require.False(t, sc.Scan(), "one line")
	return fields
}

func TestKVSCredentialFile(t *testing.T) {
	cloud, _, id, cert := provisioned(t, localcloud.Options{CredentialLifetime: 4 * time.Second})
	p, err := NewIoTCredentials(CredentialsOptions{Endpoint: cloud.CredentialsEndpoint(), RoleAlias: cloud.RoleAlias(), ThingName: id.ThingName, Certificate: cert, RootCAs: cloud.CAPool()})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "kvssink-credentials")
	f := &KVSCredentialFile{Path: path, Provider: p, RefreshBefore: 2 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()

	require.Eventually(t, func() bool { _, err := os.Stat(path); return err == nil }, 10*time.Second, 20*time.Millisecond)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	fields := readKVSFile(t, path)
	require.Len(t, fields, 5)
	require.Equal(t, "CREDENTIALS", fields[0])
	exp, err := time.Parse(time.RFC3339, fields[2])
	require.NoError(t, err, "expiration is ISO-8601")
	issued, ok := cloud.Credentials(fields[1])
	require.True(t, ok, "the file holds credentials the provider issued")
	require.Equal(t, issued.SecretAccessKey, fields[3])
	require.Equal(t, issued.SessionToken, fields[4])

	// The file is rewritten with new credentials before the old ones expire.
	require.Eventually(t, func() bool { return readKVSFile(t, path)[1] != fields[1] }, 10*time.Second, 50*time.Millisecond)
	require.True(t, time.Now().Before(exp), "rewritten before expiry")
}

func TestKVSCredentialLine(t *testing.T) {
	line := KVSCredentialLine(aws.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "s3cr3t", SessionToken: "tok", Expires: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Equal(t, "CREDENTIALS ASIAEXAMPLE 2026-01-01T00:00:00Z s3cr3t tok\n", line)
}
