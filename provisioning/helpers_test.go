package provisioning

import (
	"context"
	"crypto/tls"
	"os"
	"testing"
	"time"

	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

const testSerial = "BCM2835-00000000b211cf11"

// startCloud runs a localcloud on free ports for one test.
func startCloud(t *testing.T, opts localcloud.Options) *localcloud.Cloud {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.AllowSerials == nil {
		opts.AllowSerials = []string{testSerial}
	}
	c, err := localcloud.Open(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		c.Close()
	})
	require.NoError(t, c.Start(ctx))
	return c
}

func fleetOptions(t *testing.T, c *localcloud.Cloud) FleetOptions {
	t.Helper()
	claim, err := tls.LoadX509KeyPair(c.Paths().ClaimCert, c.Paths().ClaimKey)
	require.NoError(t, err)
	caPEM, err := os.ReadFile(c.Paths().CA)
	require.NoError(t, err)
	return FleetOptions{
		Endpoint:  c.MQTTEndpoint(),
		RootCAs:   c.CAPool(),
		CAPEM:     caPEM,
		ClaimCert: claim,
		Template:  c.Template(),
		Serial:    testSerial,
		Method:    MethodCSR,
		KeyType:   KeyECDSAP256,
		Timeout:   5 * time.Second,
		Attempts:  1,
		Backoff:   func(int) time.Duration { return 10 * time.Millisecond },
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
