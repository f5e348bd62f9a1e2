package logging

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// crashChildEnv makes the test binary, run again, crash as the agent would (not EDGECAM_*:
// the agent rejects unknown variables of its own prefix).
const crashChildEnv = "LOGGING_TEST_CRASH_CHILD"

// TestCrashChild is the crashing process of TestCrashReportIsAnErrorInTheJournal; it does
// nothing in a normal run.
func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashChildEnv)
	if mode == "" {
		t.Skip("only run by TestCrashReportIsAnErrorInTheJournal")
	}
	if mode == "crash-output" {
		on, err := JournalCrashOutput("edgecam")
		if err != nil || !on {
			os.Exit(3) // the parent sees a clean failure, not a crash
		}
	}
	done := make(chan struct{})
	go func() { panic("camera driver returned garbage") }()
	<-done
}

// TestCrashReportIsAnErrorInTheJournal: a process whose standard error is a real journald
// stream panics. The runtime's report, written to standard error without a prefix, is
// filed as info; with JournalCrashOutput it is in the journal as a critical record as well,
// so that journalctl -p err shows the crash.
func TestCrashReportIsAnErrorInTheJournal(t *testing.T) {
	tests := []struct {
		mode      string
		wantInErr bool
	}{
		{"crash-output", true},
		{"plain", false}, // what it was: the crash is not among the errors
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			ns := startJournald(t)
			id := "edgecam"
			f, env := journalStreamFor(t, ns, id)
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashChildEnv+"="+tt.mode, "JOURNAL_STREAM="+env)
			cmd.Stderr = f
			err := cmd.Run()
			require.NoError(t, f.Close())
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "the child crashes: %v", err)
			require.Equal(t, 2, ee.ExitCode(), "a Go panic's exit status")

			// The plain copy on standard error is always there (info).
			var all []journalEntry
			require.Eventually(t, func() bool {
				all = journalctl(t, ns, id)
				for _, e := range all {
					if strings.Contains(e.Message, "panic: camera driver returned garbage") && e.Priority == "6" {
						return true
					}
				}
				return false
			}, 10*time.Second, 50*time.Millisecond, "the report on standard error reaches the journal")
			if !tt.wantInErr {
				require.Empty(t, journalctl(t, ns, id, "-p", "err"))
				return
			}
			var errs []journalEntry
			require.Eventually(t, func() bool {
				errs = journalctl(t, ns, id, "-p", "err")
				for _, e := range errs {
					if strings.HasPrefix(e.Message, "goroutine ") {
						return true
					}
				}
				return false
			}, 10*time.Second, 50*time.Millisecond, "the crash report among the errors, stack included")
			require.Contains(t, errs[0].Message, "panic: camera driver returned garbage")
			for _, e := range errs {
				require.Equal(t, "2", e.Priority, e.Message)
			}
		})
	}
}

func TestJournalCrashOutputOutsideJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	on, err := JournalCrashOutput("edgecam")
	require.NoError(t, err)
	require.False(t, on)
}
