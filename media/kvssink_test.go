package media

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/testclip"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// kvssinkForTest makes the kvssink built by scripts/build-kvssink.sh available, or skips:
// EDGECAM_RECORDING_KVS_PLUGIN_DIR, else the script's default output <repo>/.cache/kvssink.
func kvssinkForTest(t *testing.T) string {
	t.Helper()
	dir, err := testclip.KVSSinkDir()
	if err != nil {
		t.Skip(err)
	}
	found, err := FindKVSSink(dir, nil)
	require.NoError(t, err)
	return found
}

func TestKVSSinkDescription(t *testing.T) {
	base := KVSSinkOptions{StreamName: "cam-1", Region: "eu-west-1", StorageSizeMB: 128, FragmentDuration: 2 * time.Second,
		RetentionHours: 24, StreamingType: "realtime", CreateStream: true, Auth: KVSAuthCredentialFile, CredentialFile: "/var/lib/edgecam/kvssink-credentials"}
	tests := []struct {
		name string
		edit func(*KVSSinkOptions)
		want []string
		err  string
	}{
		{"credential file", func(*KVSSinkOptions) {}, []string{"h264parse ! video/x-h264,stream-format=avc,alignment=au ! kvssink name=kvs",
			`stream-name="cam-1"`, `aws-region="eu-west-1"`, "storage-size=128", "fragment-duration=2000", "key-frame-fragmentation=true",
			"streaming-type=0", "retention-period=24", "allow-create-stream=true", "use-original-pts=true", "stop-stream-timeout=15",
			`credential-path="/var/lib/edgecam/kvssink-credentials"`}, ""},
		{"iot certificate, offline, no stream creation, log config", func(o *KVSSinkOptions) {
			o.Auth, o.StreamingType, o.CreateStream, o.LogConfig, o.Drain = KVSAuthIoTCertificate, "offline", false, "/s/log4cplus.properties", 30*time.Second
			o.IoTEndpoint, o.CertPath, o.KeyPath, o.CAPath, o.RoleAlias, o.ThingName = "c2ex.credentials.iot.us-east-1.amazonaws.com", "/s/device.crt", "/s/key.pem", "/s/ca.pem", "edgecam-kvs", "cam-1"
		}, []string{`iot-certificate="iot-certificate,endpoint=c2ex.credentials.iot.us-east-1.amazonaws.com,cert-path=/s/device.crt,key-path=/s/key.pem,ca-path=/s/ca.pem,role-aliases=edgecam-kvs,iot-thing-name=cam-1"`,
			"streaming-type=2", "allow-create-stream=false", `log-config="/s/log4cplus.properties"`, "stop-stream-timeout=30"}, ""},
		{"no stream name", func(o *KVSSinkOptions) { o.StreamName = "" }, nil, "no stream name"},
		{"no credential file", func(o *KVSSinkOptions) { o.CredentialFile = "" }, nil, "set credentials.endpoint"},
		{"bad streaming type", func(o *KVSSinkOptions) { o.StreamingType = "fast" }, nil, "use realtime, near-realtime or offline"},
		{"bad auth", func(o *KVSSinkOptions) { o.Auth = "keys" }, nil, "use credential_file or iot_certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.edit(&o)
			desc, err := o.Description()
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			for _, w := range tt.want {
				require.Contains(t, desc, w)
			}
		})
	}
}

func TestWallStamper(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	frame := 66 * time.Millisecond
	type unit struct {
		pts  time.Duration
		wall time.Duration // after t0
		key  bool
		want time.Duration // after t0
	}
	tests := []struct {
		name  string
		units []unit
	}{
		{"anchored on the first unit, jitter of the wall clock ignored", []unit{
			{10 * time.Second, 0, true, 0}, {10*time.Second + frame, frame + 7*time.Millisecond, false, frame},
			{10*time.Second + 2*frame, 2*frame - 5*time.Millisecond, false, 2 * frame}}},
		{"a clock stepped forward re-anchors on the next keyframe", []unit{
			{0, 0, true, 0}, {frame, frame + time.Hour, false, frame}, {2 * frame, 2*frame + time.Hour, true, 2*frame + time.Hour},
			{3 * frame, 3*frame + time.Hour, false, 3*frame + time.Hour}}},
		{"a clock stepped back is not followed", []unit{
			{0, 0, true, 0}, {frame, frame - time.Hour, true, frame}, {2 * frame, 2*frame - time.Hour, false, 2 * frame}}},
		{"repeated stream timestamps still go forward", []unit{
			{0, 0, true, 0}, {frame, frame, false, frame}, {frame, frame, false, frame + time.Millisecond}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w wallStamper
			for i, u := range tt.units {
				got := w.stamp(AccessUnit{PTS: u.pts, Wall: t0.Add(u.wall), Keyframe: u.key})
				require.Equal(t, time.Duration(t0.Add(u.want).UnixNano()), got, "unit %d", i)
			}
		})
	}
}

func TestKVSSinkLogRoutesLinesAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	core, logs := observer.New(zap.DebugLevel)
	l, err := StartKVSSinkLog(dir, zap.New(core), false)
	require.NoError(t, err)
	props, err := os.ReadFile(l.ConfigPath())
	require.NoError(t, err)
	require.Contains(t, string(props), "log4cplus.rootLogger=INFO, Edgecam")
	require.Contains(t, string(props), "File="+filepath.Join(dir, "kvssink.log"))

	file := filepath.Join(dir, "kvssink.log")
	require.NoError(t, os.WriteFile(file, []byte("ERROR Failed to describe stream\nINFO Stream is ready\npartial"), 0o600))
	require.Eventually(t, func() bool { return logs.FilterField(zap.String("says", "Stream is ready")).Len() == 1 }, 5*time.Second, 20*time.Millisecond)
	// log4cplus rotates: the file is renamed and a new one started.
	require.NoError(t, os.Rename(file, file+".1"))
	require.NoError(t, os.WriteFile(file, []byte("WARN Dropped frame\n"), 0o600))
	require.Eventually(t, func() bool { return logs.FilterField(zap.String("says", "Dropped frame")).Len() == 1 }, 5*time.Second, 20*time.Millisecond)
	l.Close()

	errs := logs.FilterField(zap.String("says", "Failed to describe stream")).All()
	require.Len(t, errs, 1)
	require.Equal(t, zap.ErrorLevel, errs[0].Level)
	require.Equal(t, zap.WarnLevel, logs.FilterField(zap.String("says", "Dropped frame")).All()[0].Level)
	require.Equal(t, 1, logs.FilterField(zap.String("says", "partial")).Len(), "a line cut short by the stop is still logged")
}

func TestKVSSinkStartupTimeoutWhenControlPlaneUnreachable(t *testing.T) {
	kvssinkForTest(t)
	clip, _ := testclip.Path(t, testclip.Ball)
	// A port nobody listens on: kvssink retries its DescribeStream for ever.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	require.NoError(t, os.WriteFile(creds, []byte("CREDENTIALS AKIDEXAMPLE "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+" secret token\n"), 0o600))
	core, logs := observer.New(zap.DebugLevel)
	klog, err := StartKVSSinkLog(filepath.Join(dir, "kvssink"), zap.New(core).Named("kvssink"), os.Getenv("KVSSINK_TEST_DEBUG") != "")
	require.NoError(t, err)
	defer klog.Close()
	rec, err := NewKVSSinkRecorder(KVSSinkOptions{StreamName: "unreachable", Region: "us-east-1", StorageSizeMB: 16, FragmentDuration: 2 * time.Second,
		StreamingType: "realtime", CreateStream: true, CredentialFile: creds, ControlPlaneURI: "http://" + addr,
		LogConfig: klog.ConfigPath(), StartupTimeout: 3 * time.Second, Drain: 2 * time.Second, Log: zap.New(core)})
	require.NoError(t, err)

	hub := NewHub(HubOptions{})
	sub := hub.Subscribe(SubscribeOptions{Name: "kvs", QueueFrames: 480})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := fileSource(t, clip, true, hub, true)
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx) }()

	started := time.Now()
	err = rec.Record(ctx, sub)
	took := time.Since(started)
	if os.Getenv("KVSSINK_TEST_DEBUG") != "" {
		for _, e := range logs.All() {
			t.Logf("%s %s %s %v", e.Time.Format("15:04:05.000"), e.Level, e.Message, e.ContextMap())
		}
	}
	require.ErrorIs(t, err, ErrKVSUnreachable)
	require.ErrorContains(t, err, "http://"+addr)
	require.Less(t, took, 30*time.Second, "Record must give up by itself, not wait for kvssink")
	t.Logf("Record gave up after %s: %v", took.Round(time.Millisecond), err)
	cancel()
	<-srcDone
	// What kvssink said reached the log through the log4cplus file, not stdout.
	require.Eventually(t, func() bool { return logs.FilterMessage("kvssink").Len() > 0 }, 5*time.Second, 50*time.Millisecond)
	for _, e := range logs.All() {
		t.Logf("%s %s %s %v", e.Time.Format("15:04:05.000"), e.Level, e.Message, e.ContextMap())
	}
	require.Zero(t, rec.Stats().Persisted)
	require.True(t, strings.Contains(err.Error(), "restarting kvssink"))
}

func TestKVSSinkLogRepeatFilter(t *testing.T) {
	var f repeatFilter
	t0 := time.Now()
	line := func(h int) string {
		return fmt.Sprintf("curlCompleteSync(): [cam] curl perform failed for handle %d", h)
	}
	n, ok := f.allow(line(1), t0)
	require.True(t, ok)
	require.Zero(t, n)
	for i := 2; i < 12; i++ {
		_, ok = f.allow(line(i), t0.Add(time.Duration(i)*100*time.Millisecond))
		require.False(t, ok, "the same kind within the window is held back")
	}
	n, ok = f.allow("another line", t0.Add(time.Second))
	require.True(t, ok, "another kind goes through")
	require.Zero(t, n)
	n, ok = f.allow(line(99), t0.Add(kvssinkRepeatWindow+time.Second))
	require.True(t, ok)
	require.Equal(t, 10, n, "the next one says how many were held back")
}
