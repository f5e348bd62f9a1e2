package kvsupload

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// TestCrashChild is the process the kill -9 test starts and kills: it appends fragments from
// a file to the spool, one every 100 ms like a live camera, printing "spooled <i>" once each
// Append returned (written and fsynced), while the uploader sends the spool to localcloud.
// With no fragments left to append it waits until the spool is drained and prints "drained".
func TestCrashChild(t *testing.T) {
	if os.Getenv("KVSUPLOAD_CRASH_CHILD") != "1" {
		t.Skip("run by TestKillDuringUpload")
	}
	env := func(k string) string { return os.Getenv("KVSUPLOAD_" + k) }
	start, _ := strconv.Atoi(env("START"))
	raw, err := os.ReadFile(env("FRAGMENTS"))
	require.NoError(t, err)
	var frags []Fragment
	for off := 0; off < len(raw); {
		info, n, ok := parseRecord(raw[off:])
		require.True(t, ok)
		hlen := int(uint32(raw[off+44]) | uint32(raw[off+45])<<8 | uint32(raw[off+46])<<16 | uint32(raw[off+47])<<24)
		p := raw[off+recHeaderLen : off+n]
		frags = append(frags, Fragment{Timecode: info.Timecode, Wall: info.Wall, Frames: info.Frames, Duration: info.Duration, Header: p[:hlen], Cluster: p[hlen:]})
		off += n
	}
	sp, err := OpenSpool(SpoolOptions{Dir: env("SPOOL")})
	require.NoError(t, err, "the spool must open after a kill")
	fmt.Printf("opened %d\n", sp.Stats().Fragments)
	creds := aws.Credentials{AccessKeyID: env("AKID"), SecretAccessKey: env("SECRET"), SessionToken: env("TOKEN")}
	up, err := NewUploader(UploaderOptions{Spool: sp, StreamName: "crash", Region: env("REGION"), ControlPlaneURL: env("ENDPOINT"),
		Credentials:  aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }),
		CreateStream: true, DataRetentionHours: 24, Deduplicate: true, MaxBackoff: 200 * time.Millisecond, Log: zap.NewNop()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = up.Run(ctx) }()
	for i := start; i < len(frags); i++ {
		f := frags[i]
		require.NoError(t, sp.Append(&f))
		fmt.Printf("spooled %d\n", i)
		time.Sleep(100 * time.Millisecond)
	}
	for sp.Stats().Fragments > 0 {
		select {
		case <-sp.Appended():
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Println("drained")
}

func TestKillDuringUpload(t *testing.T) {
	kills, seconds := 5, 40
	if os.Getenv("EDGECAM_LONG_TESTS") == "1" {
		kills, seconds = 20, 120
	}
	aus := rebase(encode(t, "320x240", 15, seconds, 15))
	frags := fragmentAll(NewFragmenter(FragmenterOptions{}), aus)
	require.Len(t, frags, seconds)
	dir := t.TempDir()
	var raw []byte
	for i := range frags {
		raw = appendRecord(raw, uint64(i+1), &frags[i])
	}
	fragFile := filepath.Join(dir, "fragments.bin")
	require.NoError(t, os.WriteFile(fragFile, raw, 0o600))
	spoolDir := filepath.Join(dir, "spool")

	cloud := newCloudRig(t)
	ic := cloud.current().IssueCredentials("crash-thing")
	child := func(start int) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), "KVSUPLOAD_CRASH_CHILD=1", "KVSUPLOAD_START="+strconv.Itoa(start),
			"KVSUPLOAD_FRAGMENTS="+fragFile, "KVSUPLOAD_SPOOL="+spoolDir, "KVSUPLOAD_ENDPOINT="+cloud.endpoint(),
			"KVSUPLOAD_REGION="+cloud.current().Region(), "KVSUPLOAD_AKID="+ic.AccessKeyID, "KVSUPLOAD_SECRET="+ic.SecretAccessKey,
			"KVSUPLOAD_TOKEN="+ic.SessionToken)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd, bufio.NewScanner(out)
	}

	spooled := map[int]bool{} // fragments whose Append returned before a kill
	next := 0
	for k := 0; k < kills && next < len(frags); k++ {
		cmd, sc := child(next)
		lines := make(chan string)
		go func() {
			defer close(lines)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		killAt := time.After(time.Duration(200+rand.IntN(1200)) * time.Millisecond)
		last := next - 1
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if v, found := strings.CutPrefix(l, "spooled "); found {
					i, err := strconv.Atoi(v)
					require.NoError(t, err)
					spooled[i] = true
					last = i
				}
			case <-killAt:
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
				for l := range lines { // what it printed before dying
					if v, found := strings.CutPrefix(l, "spooled "); found {
						i, _ := strconv.Atoi(v)
						spooled[i] = true
						last = i
					}
				}
				break read
			}
		}
		err := cmd.Wait()
		require.Error(t, err, "killed")
		t.Logf("kill %d: child had spooled up to fragment %d", k+1, last)
		// The camera went on while the agent was dead: the next run captures later fragments.
		next = last + 2
	}
	// A last run records the rest and drains the spool.
	cmd, sc := child(min(next, len(frags)))
	drained := false
	for sc.Scan() {
		if v, found := strings.CutPrefix(sc.Text(), "spooled "); found {
			i, _ := strconv.Atoi(v)
			spooled[i] = true
		}
		drained = drained || sc.Text() == "drained"
	}
	require.NoError(t, cmd.Wait())
	require.True(t, drained)

	tcs, frames := cloud.storedInKVS(t, cloud.credentials(), "crash")
	stored := map[int64]bool{}
	for _, tc := range tcs {
		require.False(t, stored[tc], "fragment %d stored twice", tc)
		stored[tc] = true
	}
	index := map[int64]int{}
	for i, f := range frags {
		index[f.Timecode] = i
	}
	wantFrames := 0
	for tc := range stored {
		i, ok := index[tc]
		require.True(t, ok, "stored fragment %d was never captured", tc)
		wantFrames += frags[i].Frames
	}
	for i := range spooled {
		require.True(t, stored[frags[i].Timecode], "fragment %d was written to the spool before a kill but is not in KVS", i)
	}
	require.Equal(t, wantFrames, frames, "every frame of the stored fragments decodes")
	ks, err := cloud.current().KVSStreamStats("crash")
	require.NoError(t, err)
	t.Logf("%d kills: %d fragments spooled, %d stored, localcloud %+v", kills, len(spooled), len(stored), ks)
	require.Zero(t, ks.Duplicates, "no fragment sent again once stored")
}
