package provisioning

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edgecam/edgecam/localcloud"
)

// BenchmarkFleetProvisioning measures the wall time of a first boot's fleet provisioning by
// claim against localcloud's broker on loopback: the claim's MQTT connection (TLS), the key
// pair (made here for a CSR, by the cloud for CreateKeysAndCertificate), the certificate, the
// RegisterThing answer, and the identity written to a fresh store. Each iteration is a
// device that has never provisioned (a new serial, a new store). ms/provision is the mean.
func BenchmarkFleetProvisioning(b *testing.B) {
	for _, m := range []struct {
		name, method, keyType string
	}{
		{"csr-ecdsa-p256", MethodCSR, KeyECDSAP256},
		{"csr-rsa-2048", MethodCSR, KeyRSA2048},
		{"create-keys-and-certificate", MethodKeys, ""},
	} {
		b.Run(m.name, func(b *testing.B) {
			const serials = 2000
			allow := make([]string, serials)
			for i := range allow {
				allow[i] = benchSerial(i)
			}
			cloud, err := localcloud.Open(localcloud.Options{Dir: b.TempDir(), AllowSerials: allow})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := cloud.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer cloud.Close()
			claim, err := tls.LoadX509KeyPair(cloud.Paths().ClaimCert, cloud.Paths().ClaimKey)
			if err != nil {
				b.Fatal(err)
			}
			caPEM, err := os.ReadFile(cloud.Paths().CA)
			if err != nil {
				b.Fatal(err)
			}
			opts := FleetOptions{Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), CAPEM: caPEM, ClaimCert: claim,
				Template: cloud.Template(), Method: m.method, KeyType: m.keyType, Timeout: 30 * time.Second, Attempts: 1}
			i := 0
			var total time.Duration
			for b.Loop() {
				if i == serials {
					b.Fatalf("more than %d provisionings: run with -benchtime=20x", serials)
				}
				b.StopTimer()
				store, err := OpenStore(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				opts.Serial = benchSerial(i)
				b.StartTimer()
				began := time.Now()
				id, err := Provision(ctx, store, opts)
				total += time.Since(began)
				if err != nil {
					b.Fatal(err)
				}
				if id.ThingName != opts.Serial {
					b.Fatalf("provisioned thing %q, want %q", id.ThingName, opts.Serial)
				}
				i++
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(i), "ms/provision")
		})
	}
}

func benchSerial(i int) string { return fmt.Sprintf("BENCH-%06d", i) }
