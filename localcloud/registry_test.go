package localcloud

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Changes made while the registry is being written share the next write (group commit)
// instead of one whole-registry rewrite each, and none returns before it is on disk. One
// rewrite per change held a fleet provisioning many devices at once to the disk's fsync
// rate, with the whole registry re-encoded every time.
func TestRegistryGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.json")
	r, err := openRegistry(path)
	require.NoError(t, err)
	var writes atomic.Int32
	firstWriting, release := make(chan struct{}), make(chan struct{})
	r.beforeWrite = func() {
		if writes.Add(1) == 1 {
			close(firstWriting)
			<-release
		}
	}
	// The first change's write is held up...
	firstDone := make(chan error, 1)
	go func() { firstDone <- r.addCert(CertRecord{ID: "cert-0", Status: StatusPendingActivation}) }()
	<-firstWriting

	// ...while 20 more changes come in, each waiting for a write that has its change.
	const n = 20
	var returned atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("cert-%d", i)
			err := r.addCert(CertRecord{ID: id, Status: StatusPendingActivation})
			if err == nil {
				err = r.registerThing(fmt.Sprintf("thing-%d", i), id, map[string]string{"SerialNumber": id})
			}
			returned.Add(1)
			errs <- err
		}()
	}
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.changes == n+1
	}, 30*time.Second, time.Millisecond, "every addCert made its change")
	require.Zero(t, returned.Load(), "no change returns before a write that has it")

	close(release)
	require.NoError(t, <-firstDone)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// The first write, one for the 20 certificates waiting together, and at most 20 for the
	// thing registrations (as many as 1 when they come together); one write per change
	// would be 41.
	require.LessOrEqual(t, writes.Load(), int32(2+n))
	require.GreaterOrEqual(t, writes.Load(), int32(3))

	// Everything is on disk.
	again, err := openRegistry(path)
	require.NoError(t, err)
	require.Len(t, again.Certs, n+1)
	require.Len(t, again.Things, n)
	for i := 1; i <= n; i++ {
		c := again.Certs[fmt.Sprintf("cert-%d", i)]
		require.NotNil(t, c)
		require.Equal(t, StatusActive, c.Status)
		require.Equal(t, []string{fmt.Sprintf("thing-%d", i)}, c.Things)
	}
}

// BenchmarkRegistryProvision measures what fleet provisioning asks of the registry per device
// (a new certificate, then its thing) with 2000 devices registered already and 64
// provisioning at once.
func BenchmarkRegistryProvision(b *testing.B) {
	r, err := openRegistry(filepath.Join(b.TempDir(), "registry.json"))
	require.NoError(b, err)
	pem := "-----BEGIN CERTIFICATE-----\n" + strings.Repeat("MIIBszCCAVmgAwIBAgIQ", 30) + "\n-----END CERTIFICATE-----\n"
	r.mu.Lock()
	for i := range 2000 {
		id, thing := fmt.Sprintf("%064d", i), fmt.Sprintf("thing-%d", i)
		r.Certs[id] = &CertRecord{ID: id, PEM: pem, Status: StatusActive, Things: []string{thing}}
		r.Things[thing] = &Thing{Name: thing, Attributes: map[string]string{"SerialNumber": thing}, Certificates: []string{id}}
	}
	r.mu.Unlock()
	var n atomic.Int64
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			id, thing := fmt.Sprintf("new-%060d", i), fmt.Sprintf("new-thing-%d", i)
			if err := r.addCert(CertRecord{ID: id, PEM: pem, Status: StatusPendingActivation}); err != nil {
				b.Fatal(err)
			}
			if err := r.registerThing(thing, id, map[string]string{"SerialNumber": thing}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
