//go:build unix

package motion

import (
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time the process has used so far (user and system).
func processCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// reportCPU adds the CPU time per frame since start as "cpu-ns/op": on a shared, loaded
// machine it leaves out the time the benchmark waited for a core, which ns/op includes.
func reportCPU(b *testing.B, start time.Duration) {
	if used := processCPU() - start; start > 0 && used > 0 && b.N > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
