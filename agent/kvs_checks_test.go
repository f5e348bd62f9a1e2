package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// These checks look at what localcloud's KVS holds after the agent recorded a test clip into
// it (ListFragments, GetClip, the ingest counters), not at what the agent meant to send.

// clipRun is one agent playing a clip (once, in real time) into its own KVS stream.
type clipRun struct {
	name   string
	stream string
	a      *Agent
	done   chan error
	first  time.Time // the wall time of the clip's first frame (what producer timestamps are)
	frames uint64
}

// runClipAgent starts an agent with its own thing (serial) that plays clip once and records
// it into stream as adjust configures it.
func runClipAgent(t *testing.T, cloud *localcloud.Cloud, serial, stream, clip string, adjust func(*config.Config)) *clipRun {
	t.Helper()
	cfg := cloudConfig(t, cloud)
	cfg.Device.Serial = serial
	cfg.WebRTC.Enabled = false
	cfg.Media.Source.Kind, cfg.Media.Source.Path, cfg.Media.Source.Loop = config.SourceFile, clip, false
	cfg.Recording.Mode = config.RecordContinuous
	cfg.Recording.Local.Enabled = false
	cfg.Recording.KVS.Enabled = true
	cfg.Recording.KVS.StreamName = stream
	if adjust != nil {
		adjust(&cfg)
	}
	require.Empty(t, cfg.Validate())
	a, err := New(Options{Config: cfg, Version: "test", RequireCloud: true,
		Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(stream)})
	require.NoError(t, err)
	r := &clipRun{name: stream, stream: stream, a: a, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(cancel)
	return r
}

// watchFirst notes the wall time of the run's first frame (polled: the source counts frames).
func (r *clipRun) watchFirst(t *testing.T, fps int) {
	t.Helper()
	require.Eventually(t, func() bool { return r.a.Frames() > 0 }, 60*time.Second, 2*time.Millisecond, "%s: the clip plays", r.name)
	n := r.a.Frames()
	r.first = r.a.Source().LastFrame().Add(-time.Duration(n-1) * time.Second / time.Duration(fps))
}

// wait waits for the clip to end and the agent to stop (its recorder drained).
func (r *clipRun) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-r.done:
		require.NoError(t, err, r.name)
	case <-time.After(timeout):
		t.Fatalf("%s: the agent did not stop %s after the clip ended", r.name, timeout)
	}
	r.frames = r.a.Frames()
}

// kvsRead is a read-side call (ListFragments, GetClip) signed with the viewer's key, as AWS's
// SDKs sign it.
func kvsRead(t *testing.T, cloud *localcloud.Cloud, op string, in any) []byte {
	t.Helper()
	status, out := kvsSignedCall(t, cloud, op, in)
	require.Equal(t, http.StatusOK, status, "%s: %s", op, out)
	return out
}

type checkFragment struct {
	Number   string  `json:"FragmentNumber"`
	LengthMs int64   `json:"FragmentLengthInMilliseconds"`
	Producer float64 `json:"ProducerTimestamp"`
	Size     int64   `json:"FragmentSizeInBytes"`
}

func (f checkFragment) start() time.Time { return time.UnixMilli(int64(f.Producer*1000 + 0.5)) }
func (f checkFragment) end() time.Time {
	return f.start().Add(time.Duration(f.LengthMs) * time.Millisecond)
}

// listStream is every fragment KVS holds for stream (ListFragments, pages followed), oldest
// first.
func listStream(t *testing.T, cloud *localcloud.Cloud, stream string) []checkFragment {
	t.Helper()
	var all []checkFragment
	in := map[string]any{"StreamName": stream}
	for {
		var out struct {
			Fragments []checkFragment
			NextToken string
		}
		require.NoError(t, json.Unmarshal(kvsRead(t, cloud, "listFragments", in), &out))
		all = append(all, out.Fragments...)
		if out.NextToken == "" {
			break
		}
		in = map[string]any{"StreamName": stream, "NextToken": out.NextToken}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Producer < all[j].Producer })
	return all
}

// clipFrames fetches the whole stream with GetClip and counts the frames ffprobe decodes.
func clipFrames(t *testing.T, cloud *localcloud.Cloud, stream string, list []checkFragment) int {
	t.Helper()
	body := kvsRead(t, cloud, "getClip", map[string]any{"StreamName": stream, "ClipFragmentSelector": map[string]any{
		"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": map[string]any{
			"StartTimestamp": float64(list[0].start().Add(-time.Second).UnixMilli()) / 1000,
			"EndTimestamp":   float64(list[len(list)-1].end().Add(time.Second).UnixMilli()) / 1000}}})
	file := filepath.Join(t.TempDir(), stream+".mp4")
	require.NoError(t, os.WriteFile(file, body, 0o600))
	return probeFrames(t, file)
}

// The same recording through kvssink and through the native uploader: both accepted by
// localcloud and both play, with every frame the agent captured.
func TestKVSSinkAndNativeRecordTheSameClip(t *testing.T) {
	clip, side := testclip.Path(t, testclip.Ball)
	uploaders := []struct {
		uploader string
		serial   string
		stream   string
	}{
		{config.KVSUploaderKVSSink, "cam-check-kvssink", "check-kvssink"},
		{config.KVSUploaderNative, "cam-check-native", "check-native"},
	}
	pluginDir, statErr := testclip.KVSSinkDir()
	var serials []string
	for _, u := range uploaders {
		serials = append(serials, u.serial)
	}
	cloud := startCloud(t, serials...)

	// Both agents play the clip at the same time (each in real time): under 60 s in all.
	runs := map[string]*clipRun{}
	for _, u := range uploaders {
		if u.uploader == config.KVSUploaderKVSSink && statErr != nil {
			t.Logf("SKIPPED the kvssink half: %v", statErr)
			continue
		}
		runs[u.uploader] = runClipAgent(t, cloud, u.serial, u.stream, clip, func(cfg *config.Config) {
			cfg.Recording.KVS.Uploader = u.uploader
			cfg.Recording.KVS.PluginDir = pluginDir
			cfg.Recording.KVS.StartupTimeout = 10 * time.Second
		})
	}
	for _, u := range uploaders {
		t.Run(u.uploader, func(t *testing.T) {
			r := runs[u.uploader]
			if r == nil {
				t.Skip(statErr)
			}
			r.watchFirst(t, side.FPS)
			r.wait(t, 90*time.Second)
			require.Equal(t, u.uploader, r.a.kvsUploader, "the uploader asked for records")
			require.EqualValues(t, side.Frames, r.frames, "the agent captured the whole clip")

			list := listStream(t, cloud, u.stream)
			require.NotEmpty(t, list, "fragments listed")
			st, err := cloud.KVSStreamStats(u.stream)
			require.NoError(t, err)
			require.Empty(t, st.Errors, "no ERROR acks")
			require.Zero(t, st.Duplicates)
			frames := clipFrames(t, cloud, u.stream, list)
			gap, _ := largestGap(list)
			t.Logf("%s: %d frames captured from %s; %d fragments %s → %s (largest gap %s), %d bytes ingested; GetClip decodes %d frames",
				u.uploader, r.frames, r.first.Format("15:04:05.000"), len(list), list[0].start().Format("15:04:05.000"),
				list[len(list)-1].end().Format("15:04:05.000"), gap, st.BytesIngested, frames)
			require.Equal(t, int(r.frames), frames, "GetClip holds every frame the agent captured")
			require.WithinDuration(t, r.first, list[0].start(), time.Second, "producer timestamps are capture wall time")

			// What was recorded shows in the status document and the metrics, for either uploader.
			name, kst := r.a.kvsStatus()
			require.Equal(t, u.uploader, name)
			require.NotNil(t, kst, "the status document has the uploader's state")
			require.Equal(t, u.stream, kst.Stream)
			require.Positive(t, kst.Persisted)
			require.Positive(t, kst.PersistedBytes)
			if u.uploader == config.KVSUploaderKVSSink {
				require.EqualValues(t, r.frames, kst.Frames, "every captured frame went to kvssink")
				require.Positive(t, kst.Sessions)
			} else {
				require.LessOrEqual(t, kst.PersistedBytes, st.BytesIngested, "persisted cluster bytes are part of what was ingested")
			}
			r.a.metrics.sample(r.a)
			require.EqualValues(t, kst.PersistedBytes, testutil.ToFloat64(r.a.metrics.RecordingBytes.WithLabelValues("kvs")),
				"edgecam_recording_bytes_total{target=kvs} follows the uploader")
		})
	}
}

// largestGap is the longest span between a fragment's end and the next one's start.
func largestGap(list []checkFragment) (time.Duration, time.Time) {
	var gap time.Duration
	var at time.Time
	for i := 1; i < len(list); i++ {
		if d := list[i].start().Sub(list[i-1].end()); d > gap {
			gap, at = d, list[i-1].end()
		}
	}
	return gap, at
}

// covered returns how far before from the fragments covering [from, to] without a gap begin
// (negative: from itself is not covered), and whether they reach to.
func covered(list []checkFragment, from, to time.Time, slack time.Duration) (margin time.Duration, ok bool) {
	for i, f := range list {
		if f.start().After(from) || !f.end().After(from) {
			continue
		}
		margin = from.Sub(f.start())
		end := f.end()
		for j := i + 1; j < len(list) && !end.After(to) && !list[j].start().After(end.Add(slack)); j++ {
			if list[j].end().After(end) {
				end = list[j].end()
			}
		}
		return margin, !end.Before(to)
	}
	return -1, false
}

// motionCheck is one clip's figures.
type motionCheck struct {
	clip                 string
	gated, continuous    int64
	intervals, coveredOK int
	outside              int // motion-stream fragments outside every labelled event's window
	detail               string
}

// checkMotionClip plays clip into two agents at once (one continuous, one in motion mode, both
// with the given uploader, kvssink or native) and measures the motion stream against the
// continuous one and the clip's labels.
func checkMotionClip(t *testing.T, cloud *localcloud.Cloud, uploader string, i int, clip string, adjust func(*config.Motion)) motionCheck {
	t.Helper()
	var pluginDir string
	if uploader == config.KVSUploaderKVSSink {
		pluginDir = kvssinkDir(t)
	}
	setUploader := func(cfg *config.Config) {
		cfg.Recording.KVS.Uploader = uploader
		cfg.Recording.KVS.PluginDir = pluginDir
		cfg.Recording.KVS.StartupTimeout = 10 * time.Second
	}
	path, side := testclip.Path(t, clip)
	preRoll := 2 * time.Second
	motionCfg := config.Default().Motion
	motionCfg.PreRoll = preRoll
	if adjust != nil {
		adjust(&motionCfg)
	}
	var events eventLog
	require.NoError(t, cloud.Observe("edgecam/+/events/motion", events.add))
	cont := runClipAgent(t, cloud, fmt.Sprintf("cam-cont-%d", i), fmt.Sprintf("cont-%d", i), path, setUploader)
	mot := runClipAgent(t, cloud, fmt.Sprintf("cam-motion-%d", i), fmt.Sprintf("motion-%d", i), path, func(cfg *config.Config) {
		setUploader(cfg)
		cfg.Recording.Mode = config.RecordMotion
		cfg.Motion = motionCfg
	})
	var wg sync.WaitGroup
	for _, r := range []*clipRun{cont, mot} {
		r.watchFirst(t, side.FPS)
	}
	for _, r := range []*clipRun{cont, mot} {
		wg.Add(1)
		go func() { defer wg.Done(); r.wait(t, time.Duration(side.Duration)*time.Second+90*time.Second) }()
	}
	wg.Wait()
	cs, err := cloud.KVSStreamStats(cont.stream)
	require.NoError(t, err)
	ms, err := cloud.KVSStreamStats(mot.stream)
	require.NoError(t, err)
	require.Positive(t, cs.BytesIngested, "%s: the continuous recording reached KVS", clip)
	out := motionCheck{clip: clip, gated: ms.BytesIngested, continuous: cs.BytesIngested, intervals: len(side.Motion)}
	var list []checkFragment
	if ms.Connections > 0 {
		// kvssink creates the stream at the first motion event: without one there is none.
		list = listStream(t, cloud, mot.stream)
	}
	// A fragment may only be there for an event: from the keyframe before the pre-roll to
	// the event's end (post-roll and event gap), the recording's hold (pre-roll) and the GOP
	// it ends in, with a second for the detector.
	gop := time.Duration(side.GOPSeconds * float64(time.Second))
	for _, f := range list {
		in := false
		for _, iv := range side.Motion {
			from := mot.first.Add(time.Duration(iv.Start*float64(time.Second)) - preRoll - gop)
			to := mot.first.Add(time.Duration(iv.End*float64(time.Second)) + motionCfg.PostRoll + motionCfg.EventGap + preRoll + gop + time.Second)
			if f.end().After(from) && f.start().Before(to) {
				in = true
			}
		}
		if !in {
			out.outside++
			out.detail += fmt.Sprintf(" [fragment %.1f-%.1f s outside every event]", f.start().Sub(mot.first).Seconds(), f.end().Sub(mot.first).Seconds())
		}
	}
	if len(side.Motion) == 0 {
		return out
	}
	require.NotEmpty(t, list, "%s: the labelled motion reached KVS", clip)
	slack := 2 * time.Second / time.Duration(side.FPS)
	var spans string
	for _, f := range list {
		spans += fmt.Sprintf(" %.1f-%.1f", f.start().Sub(mot.first).Seconds(), f.end().Sub(mot.first).Seconds())
	}
	t.Logf("%s: motion stream fragments (clip seconds):%s", clip, spans)
	var evs string
	for _, e := range events.distinct() {
		if e.ThingName != mot.a.Thing() {
			continue
		}
		evs += fmt.Sprintf(" %s@%.1f", e.Event, e.Start.Sub(mot.first).Seconds())
		if e.End != nil {
			evs += fmt.Sprintf("-%.1f", e.End.Sub(mot.first).Seconds())
		}
		evs += fmt.Sprintf(" (sent %.1f)", e.Timestamp.Sub(mot.first).Seconds())
	}
	t.Logf("%s: motion events (clip seconds):%s", clip, evs)
	for _, iv := range side.Motion {
		from := mot.first.Add(time.Duration((iv.Start * float64(time.Second)))).Add(-preRoll)
		to := mot.first.Add(time.Duration(iv.End * float64(time.Second)))
		// The clip-to-producer-time mapping (the first frame's wall time, producer timestamps
		// in ms) is good to a frame: a fragment starting within a frame after the pre-roll's
		// first instant (the labels and keyframes fall on whole seconds) covers it.
		frame := time.Second / time.Duration(side.FPS)
		margin, ok := covered(list, from.Add(frame), to, slack)
		margin -= frame
		out.detail += fmt.Sprintf(" [%.0f-%.0f s: covered from %s before its pre-roll, to its end %v]", iv.Start, iv.End, margin, ok)
		if ok && margin >= -frame {
			out.coveredOK++
		}
	}
	return out
}

func logMotionChecks(t *testing.T, checks []motionCheck) (gated, continuous int64) {
	for _, c := range checks {
		gated += c.gated
		continuous += c.continuous
		t.Logf("%s: gated %d of %d bytes (%.1f %%); %d/%d labelled intervals covered from their pre-roll; %d fragments outside the events;%s",
			c.clip, c.gated, c.continuous, 100*float64(c.gated)/float64(c.continuous), c.coveredOK, c.intervals, c.outside, c.detail)
	}
	t.Logf("suite: gated %d of %d bytes (%.1f %%)", gated, continuous, 100*float64(gated)/float64(continuous))
	return gated, continuous
}

// Motion mode on the 30 s ball clip: every labelled interval is in KVS from its pre-roll, and
// nothing outside the events is. The clip moves 9 s of its 30 with 7 s between: with the
// default post-roll (4 s) and event gap (6 s) it is one event to the clip's end, so this
// short variant ends events after 1 s + 1 s, which leaves its last seconds quiet.
func TestKVSMotionGatedBallClip(t *testing.T) {
	checkMotionBallClip(t, config.KVSUploaderNative)
}

// The same through the real kvssink (what recording.kvs.uploader auto picks when it is
// built): each motion event is one kvssink session from its pre-roll.
func TestKVSSinkMotionGatedBallClip(t *testing.T) {
	checkMotionBallClip(t, config.KVSUploaderKVSSink)
}

func checkMotionBallClip(t *testing.T, uploader string) {
	cloud := startCloud(t, "cam-cont-0", "cam-motion-0")
	c := checkMotionClip(t, cloud, uploader, 0, testclip.Ball, func(m *config.Motion) {
		m.PostRoll, m.EventGap = time.Second, time.Second
	})
	gated, continuous := logMotionChecks(t, []motionCheck{c})
	require.Equal(t, c.intervals, c.coveredOK, "every labelled interval covered from its pre-roll:%s", c.detail)
	require.Zero(t, c.outside, "nothing outside the events reaches KVS:%s", c.detail)
	require.Less(t, gated, continuous, "motion mode keeps the quiet spans out of KVS")
}

// Motion mode on the motion clip suite (EDGECAM_LONG_TESTS=1: 9 minutes of real-time clips):
// bytes ingested by KVS ≤ 25 % of continuous, and every labelled interval covered from its
// pre-roll.
func TestKVSMotionGatedSuite(t *testing.T) {
	checkMotionSuite(t, config.KVSUploaderNative)
}

// The same through the real kvssink (EDGECAM_LONG_TESTS=1, another 9 minutes).
func TestKVSSinkMotionGatedSuite(t *testing.T) {
	checkMotionSuite(t, config.KVSUploaderKVSSink)
}

func checkMotionSuite(t *testing.T, uploader string) {
	if os.Getenv("EDGECAM_LONG_TESTS") != "1" {
		t.Skip("the motion suite plays 9 minutes of clips in real time: set EDGECAM_LONG_TESTS=1")
	}
	var serials []string
	for i := range testclip.Suite {
		serials = append(serials, fmt.Sprintf("cam-cont-%d", i), fmt.Sprintf("cam-motion-%d", i))
	}
	cloud := startCloud(t, serials...)
	var checks []motionCheck
	for i, clip := range testclip.Suite {
		checks = append(checks, checkMotionClip(t, cloud, uploader, i, clip, nil))
	}
	gated, continuous := logMotionChecks(t, checks)
	for _, c := range checks {
		require.Equal(t, c.intervals, c.coveredOK, "%s: every labelled interval covered from its pre-roll:%s", c.clip, c.detail)
		require.Zero(t, c.outside, "%s: nothing outside the events reaches KVS:%s", c.clip, c.detail)
	}
	require.LessOrEqual(t, gated*4, continuous, "the suite's gated bytes ≤ 25 %% of continuous")
}
