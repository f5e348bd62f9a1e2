package kvsupload

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/edgecam/edgecam/media"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

var (
	fragCacheMu sync.Mutex
	fragCache   = map[string][]Fragment{}
)

// realFragments returns n one-second fragments of a real x264 stream (320x240, 15 fps).
func realFragments(t testing.TB, n int, size string) []Fragment {
	t.Helper()
	fragCacheMu.Lock()
	defer fragCacheMu.Unlock()
	key := size + "/" + time.Duration(n).String()
	if f, ok := fragCache[key]; ok {
		return f
	}
	frags := fragmentAll(NewFragmenter(FragmenterOptions{}), encode(t, size, 15, n, 15))
	require.Len(t, frags, n)
	fragCache[key] = frags
	return frags
}

func staticCreds(expires time.Time) aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret", SessionToken: "token",
			CanExpire: !expires.IsZero(), Expires: expires, Source: "test"}, nil
	})
}

type uploadRig struct {
	t      *testing.T
	fake   *fakeKVS
	spool  *Spool
	up     *Uploader
	cancel context.CancelFunc
	done   chan error
}

func newRig(t *testing.T, mod func(*UploaderOptions)) *uploadRig {
	fake := newFakeKVS(t, "cam-1", true)
	sp, err := OpenSpool(SpoolOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { sp.Close() })
	o := UploaderOptions{Spool: sp, StreamName: "cam-1", Region: "us-east-1", Credentials: staticCreds(time.Time{}),
		ControlPlaneURL: fake.URL(), CreateStream: true, AckTimeout: 2 * time.Second, MaxBackoff: 200 * time.Millisecond,
		Log: zaptest.NewLogger(t)}
	if mod != nil {
		mod(&o)
	}
	up, err := NewUploader(o)
	require.NoError(t, err)
	return &uploadRig{t: t, fake: fake, spool: sp, up: up}
}

func (r *uploadRig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.up.Run(ctx) }()
	r.t.Cleanup(func() { cancel(); <-r.done })
}

// waitStored waits until the fake holds n fragments, or fails after limit.
func (r *uploadRig) waitStored(n int, limit time.Duration) []storedFragment {
	r.t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		if got := r.fake.Stored(); len(got) >= n {
			return got
		}
		select {
		case <-r.fake.changed:
		case err := <-r.done:
			r.t.Fatalf("uploader stopped: %v", err)
		case <-deadline.C:
			r.t.Fatalf("only %d of %d fragments stored after %s; uploader %+v", len(r.fake.Stored()), n, limit, r.up.Stats())
		}
	}
}

func timecodes(frags []Fragment) []int64 {
	var out []int64
	for _, f := range frags {
		out = append(out, f.Timecode)
	}
	return out
}

func storedTimecodes(s []storedFragment) []int64 {
	var out []int64
	for _, f := range s {
		out = append(out, f.Timecode)
	}
	return out
}

func appendAll(t *testing.T, sp *Spool, frags []Fragment) {
	for i := range frags {
		f := frags[i]
		require.NoError(t, sp.Append(&f))
	}
}

func TestUploaderDelivers(t *testing.T) {
	for _, exists := range []bool{true, false} {
		t.Run(map[bool]string{true: "stream exists", false: "stream created"}[exists], func(t *testing.T) {
			frags := realFragments(t, 8, "320x240")
			r := newRig(t, nil)
			r.fake.exists = exists
			appendAll(t, r.spool, frags)
			r.run()
			got := r.waitStored(len(frags), 30*time.Second)
			require.Equal(t, timecodes(frags), storedTimecodes(got), "every fragment once, in order")
			for i, g := range got {
				require.Equal(t, frags[i].Frames, g.Frames)
				require.True(t, g.Keyframe)
			}
			require.Eventually(t, func() bool { return r.spool.Stats().Fragments == 0 }, 10*time.Second, 10*time.Millisecond)
			h := r.fake.lastHdrs
			require.Equal(t, "cam-1", h.Get("x-amzn-stream-name"))
			require.Equal(t, "ABSOLUTE", h.Get("x-amzn-fragment-timecode-type"))
			require.Equal(t, "1", h.Get("x-amzn-fragment-acknowledgment-required"))
			require.Regexp(t, `^\d+\.\d{3}$`, h.Get("x-amzn-producer-start-timestamp"))
			require.Contains(t, h.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/")
			require.Contains(t, h.Get("Authorization"), "/us-east-1/kinesisvideo/aws4_request")
			require.Equal(t, "token", h.Get("X-Amz-Security-Token"))
			st := r.up.Stats()
			require.EqualValues(t, len(frags), st.Persisted)
			require.EqualValues(t, len(frags), st.Acks["PERSISTED"])
			require.EqualValues(t, len(frags), st.Acks["BUFFERING"])
		})
	}
}

func TestUploaderErrorIDs(t *testing.T) {
	tests := []struct {
		name    string
		errorID int
		stored  int // of 6
		skipped uint64
		fatal   bool
	}{
		{"4006 invalid MKV: skipped with a log line", 4006, 5, 1, false},
		{"4002 fragment too long: skipped", 4002, 5, 1, false},
		{"5000 internal: sent again", 5000, 6, 0, false},
		{"4008 stream deleted: stop", 4008, 2, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frags := realFragments(t, 6, "320x240")
			r := newRig(t, nil)
			r.fake.errorFor[frags[2].Timecode] = tc.errorID
			appendAll(t, r.spool, frags)
			r.run()
			if tc.fatal {
				select {
				case err := <-r.done:
					require.ErrorIs(t, err, ErrFatal)
					require.ErrorContains(t, err, "4008")
					r.done <- err
				case <-time.After(30 * time.Second):
					t.Fatal("the uploader did not stop on ErrorId 4008")
				}
				stored := storedTimecodes(r.fake.Stored())
				require.Equal(t, timecodes(frags[:2]), stored[:2])
				require.NotContains(t, stored, frags[2].Timecode)
				require.EqualValues(t, len(frags), r.up.Stats().Persisted+uint64(r.spool.Stats().Fragments), "what was not acknowledged as persisted stays in the spool")
				return
			}
			got := r.waitStored(tc.stored, 30*time.Second)
			want := timecodes(frags)
			if tc.skipped > 0 {
				want = append(want[:2:2], want[3:]...)
			}
			// A retried fragment may land after those sent behind it (KVS orders by timecode).
			require.ElementsMatch(t, want, storedTimecodes(got), "every fragment once")
			require.Eventually(t, func() bool { return r.spool.Stats().Fragments == 0 }, 10*time.Second, 10*time.Millisecond)
			st := r.up.Stats()
			require.Equal(t, tc.skipped, st.Skipped)
			require.EqualValues(t, 1, st.Errors[tc.errorID])
		})
	}
}

func TestUploaderResendsAfterSilence(t *testing.T) {
	frags := realFragments(t, 6, "320x240")
	r := newRig(t, func(o *UploaderOptions) { o.AckTimeout = 500 * time.Millisecond })
	r.fake.silent = true
	appendAll(t, r.spool, frags)
	r.run()
	require.Eventually(t, func() bool { return r.up.Stats().SentFragments >= 3 }, 20*time.Second, 10*time.Millisecond)
	r.fake.mu.Lock()
	r.fake.silent = false
	r.fake.mu.Unlock()
	got := r.waitStored(len(frags), 30*time.Second)
	require.Equal(t, timecodes(frags), storedTimecodes(got))
	st := r.up.Stats()
	require.GreaterOrEqual(t, st.Connections, uint64(2))
	require.GreaterOrEqual(t, st.Resent, uint64(3))
}

// produce appends fragments one by one every gap, like a live recording.
func produce(t *testing.T, sp *Spool, frags []Fragment, gap time.Duration, onAppend func(i int)) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range frags {
			f := frags[i]
			if err := sp.Append(&f); err != nil {
				t.Error(err)
				return
			}
			if onAppend != nil {
				onAppend(i)
			}
			time.Sleep(gap)
		}
	}()
	return done
}

func TestUploaderOutage(t *testing.T) {
	frags := realFragments(t, 20, "320x240")
	r := newRig(t, nil)
	r.run()
	done := produce(t, r.spool, frags, 50*time.Millisecond, func(i int) {
		switch i {
		case 5:
			r.fake.stop()
		case 14:
			r.fake.start()
		}
	})
	<-done
	got := r.waitStored(len(frags), 60*time.Second)
	require.Equal(t, timecodes(frags), storedTimecodes(got), "every fragment once, in order")
	require.Eventually(t, func() bool { return r.spool.Stats().Fragments == 0 }, 10*time.Second, 10*time.Millisecond)
}

func TestUploaderRenewsConnection(t *testing.T) {
	frags := realFragments(t, 12, "320x240")
	r := newRig(t, func(o *UploaderOptions) { o.MaxConnection = 400 * time.Millisecond })
	r.run()
	<-produce(t, r.spool, frags, 100*time.Millisecond, nil)
	got := r.waitStored(len(frags), 30*time.Second)
	require.Equal(t, timecodes(frags), storedTimecodes(got))
	require.GreaterOrEqual(t, r.up.Stats().Connections, uint64(2))
	r.fake.mu.Lock()
	defer r.fake.mu.Unlock()
	require.GreaterOrEqual(t, r.fake.endOfFrag, 1, "a renewed connection ends with the end-of-fragment tag")
}

func TestUploaderTrackChange(t *testing.T) {
	a := realFragments(t, 3, "320x240")
	b := realFragments(t, 3, "640x360")
	// The second track continues the first one's timeline.
	var frags []Fragment
	frags = append(frags, a...)
	for _, f := range b {
		f.Timecode += a[len(a)-1].Timecode + 1000 - b[0].Timecode
		frags = append(frags, f)
	}
	r := newRig(t, nil)
	appendAll(t, r.spool, frags)
	r.run()
	got := r.waitStored(len(frags), 30*time.Second)
	require.Len(t, got, 6)
	r.fake.mu.Lock()
	defer r.fake.mu.Unlock()
	require.Equal(t, 2, r.fake.headers, "one track header per connection")
	require.GreaterOrEqual(t, r.fake.conns, 2)
}

func TestUploaderRefusesBadOptions(t *testing.T) {
	sp, err := OpenSpool(SpoolOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	defer sp.Close()
	tests := []struct {
		name string
		o    UploaderOptions
		want string
	}{
		{"no spool", UploaderOptions{StreamName: "s", Region: "r", Credentials: staticCreds(time.Time{})}, "no spool"},
		{"no stream", UploaderOptions{Spool: sp, Region: "r", Credentials: staticCreds(time.Time{})}, "stream_name"},
		{"no region", UploaderOptions{Spool: sp, StreamName: "s", Credentials: staticCreds(time.Time{})}, "region"},
		{"no credentials", UploaderOptions{Spool: sp, StreamName: "s", Region: "r"}, "credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewUploader(tc.o)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestUploaderMissingStreamIsFatal(t *testing.T) {
	r := newRig(t, func(o *UploaderOptions) { o.CreateStream = false })
	r.fake.exists = false
	appendAll(t, r.spool, realFragments(t, 3, "320x240"))
	err := r.up.Run(context.Background())
	require.True(t, errors.Is(err, ErrFatal), "%v", err)
	require.ErrorContains(t, err, "does not exist")
}

var _ = media.AccessUnit{}

func TestUploaderLostAcknowledgement(t *testing.T) {
	tests := []struct {
		name        string
		deduplicate bool
		duplicates  int
	}{
		{"ListFragments finds the stored fragment: no duplicate", true, 0},
		{"without ListFragments the fragment is stored twice", false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frags := realFragments(t, 6, "320x240")
			r := newRig(t, func(o *UploaderOptions) { o.Deduplicate = tc.deduplicate })
			r.fake.loseAck = map[int64]bool{frags[2].Timecode: true}
			appendAll(t, r.spool, frags)
			r.run()
			got := r.waitStored(len(frags)+tc.duplicates, 30*time.Second)
			require.Eventually(t, func() bool { return r.spool.Stats().Fragments == 0 }, 10*time.Second, 10*time.Millisecond)
			require.Len(t, r.fake.Stored(), len(frags)+tc.duplicates)
			require.ElementsMatch(t, timecodes(frags), uniq(storedTimecodes(got)))
			if tc.deduplicate {
				require.Equal(t, timecodes(frags), storedTimecodes(got), "in order, once")
				require.EqualValues(t, 1, r.up.Stats().AlreadyStored)
			}
		})
	}
}

func uniq(v []int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, x := range v {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// Stopping ends the body cleanly: the fragment still open at KVS is closed and persisted
// before Run returns, instead of being cut off mid-connection.
func TestUploaderStopPersistsLastFragment(t *testing.T) {
	frags := realFragments(t, 3, "320x240")
	r := newRig(t, func(o *UploaderOptions) { o.AckTimeout = time.Minute; o.FinishTimeout = 10 * time.Second })
	appendAll(t, r.spool, frags)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.up.Run(ctx) }()
	r.done = done
	r.waitStored(2, 30*time.Second) // the third waits for a next cluster that never comes
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, timecodes(frags), storedTimecodes(r.fake.Stored()))
	require.Zero(t, r.spool.Stats().Fragments)
}
