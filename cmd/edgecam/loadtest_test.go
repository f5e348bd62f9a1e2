package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecam/edgecam/localcloud"
	"github.com/stretchr/testify/require"
)

// startTestCloud runs a localcloud for a loadtest to target with --endpoint, and collects the
// things whose running status its broker received.
func startTestCloud(t *testing.T) (*localcloud.Cloud, func() map[string]bool) {
	t.Helper()
	cloud, err := localcloud.Open(localcloud.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		cloud.Close()
	})
	require.NoError(t, cloud.Start(ctx))
	var mu sync.Mutex
	running := map[string]bool{}
	require.NoError(t, cloud.Observe("edgecam/+/status", func(topic string, payload []byte) {
		var st struct {
			ThingName string `json:"thingName"`
			State     string `json:"state"`
		}
		if json.Unmarshal(payload, &st) == nil && st.State == "running" && topic == "edgecam/"+st.ThingName+"/status" {
			mu.Lock()
			running[st.ThingName] = true
			mu.Unlock()
		}
	}))
	return cloud, func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]bool{}
		for k, v := range running {
			out[k] = v
		}
		return out
	}
}

type loadtestJSON struct {
	Endpoint   string  `json:"endpoint"`
	Localcloud bool    `json:"localcloud"`
	Devices    int     `json:"devices"`
	OK         int     `json:"ok"`
	Failed     int     `json:"failed"`
	CPUSeconds float64 `json:"cpuSeconds"`
	Provision  struct {
		Count int     `json:"count"`
		P99   float64 `json:"p99Ms"`
	} `json:"provision"`
	Failures []struct {
		Phase   string `json:"phase"`
		Message string `json:"message"`
		Count   int    `json:"count"`
	} `json:"failures"`
}

// The default: a localcloud of its own, whose registry (kept in --dir) then holds every device.
func TestLoadtestOwnLocalcloud(t *testing.T) {
	dir := t.TempDir()
	const n = 20
	stdout, stderr, code := run(t, "localcloud", "loadtest", "--devices", "20", "--rate", "0", "--concurrency", "10",
		"--dir", dir, "--serial-prefix", "own-", "--devices-dir", t.TempDir(), "--json")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	var rep loadtestJSON
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep), "--json prints only JSON on stdout: %s", stdout)
	require.True(t, rep.Localcloud)
	require.Equal(t, n, rep.Devices)
	require.Equal(t, n, rep.OK)
	require.Zero(t, rep.Failed)
	require.Empty(t, rep.Failures)
	require.Equal(t, n, rep.Provision.Count)
	require.Positive(t, rep.Provision.P99)
	require.Positive(t, rep.CPUSeconds)
	require.Contains(t, stderr, "localcloud of its own in "+dir)

	// The registry on disk has every thing, each with its own active certificate.
	cloud, err := localcloud.Open(localcloud.Options{Dir: dir})
	require.NoError(t, err)
	things := cloud.Things()
	require.Len(t, things, n)
	certs := map[string]bool{}
	for _, name := range things {
		require.True(t, strings.HasPrefix(name, "own-"), name)
		th, ok := cloud.Thing(name)
		require.True(t, ok)
		require.Len(t, th.Certificates, 1)
		rec, ok := cloud.Certificate(th.Certificates[0])
		require.True(t, ok)
		require.Equal(t, localcloud.StatusActive, rec.Status)
		certs[rec.ID] = true
	}
	require.Len(t, certs, n)
}

// A localcloud running elsewhere (--endpoint with --dir): its allow-list gets the serial
// numbers, and its broker receives every device's status.
func TestLoadtestExternalLocalcloud(t *testing.T) {
	cloud, running := startTestCloud(t)
	const n = 12
	stdout, stderr, code := run(t, "localcloud", "loadtest", "--devices", "12", "--rate", "500",
		"--endpoint", cloud.MQTTEndpoint(), "--dir", filepath.Dir(cloud.Paths().CA), "--serial-prefix", "ext-")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stdout, "12 ok, 0 failed")
	require.Contains(t, stdout, "failures:   none")
	require.Contains(t, stdout, "status publish to PUBACK")
	require.Contains(t, stdout, "ms per device")
	require.Eventually(t, func() bool { return len(running()) == n }, 30*time.Second, 20*time.Millisecond,
		"statuses received from %d of %d things", len(running()), n)
	for thing := range running() {
		require.True(t, strings.HasPrefix(thing, "ext-"), thing)
		_, ok := cloud.Thing(thing)
		require.True(t, ok)
	}
}

// An endpoint whose pre-provisioning hook refuses the devices: exit 1, and the failures are
// one group that quotes the rejection.
func TestLoadtestHookRejection(t *testing.T) {
	cloud, _ := startTestCloud(t)
	p := cloud.Paths()
	stdout, stderr, code := run(t, "localcloud", "loadtest", "--devices", "6", "--rate", "0",
		"--endpoint", cloud.MQTTEndpoint(), "--ca", p.CA, "--claim-cert", p.ClaimCert, "--claim-key", p.ClaimKey,
		"--template", cloud.Template(), "--serial-prefix", "unlisted-")
	require.Equal(t, exitFailure, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stdout, "0 ok, 6 failed")
	require.Contains(t, stdout, "6 × provision: RegisterThing rejected: statusCode 403, errorCode AccessDenied")
	require.Contains(t, stdout, "refused serial <serial>")
	require.Contains(t, stderr, "6 of 6 devices failed")
	require.Empty(t, cloud.Things())
}

func TestLoadtestBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no devices", []string{"--devices", "0"}, "--devices 0: simulate at least 1 device"},
		{"negative rate", []string{"--rate", "-5"}, "--rate -5"},
		{"no concurrency", []string{"--concurrency", "0"}, "--concurrency 0"},
		{"zero timeout", []string{"--timeout", "0s"}, "--timeout 0s"},
		{"bad method", []string{"--method", "magic"}, `--method "magic": use csr or keys`},
		{"bad key type", []string{"--key-type", "dsa"}, `--key-type "dsa"`},
		{"serial as a parameter", []string{"--param", "SerialNumber=x"}, "--param SerialNumber"},
		{"claim without endpoint", []string{"--claim-cert", "c.pem"}, "--claim-cert needs --endpoint"},
		{"endpoint without claim", []string{"--endpoint", "example.com:8883", "--template", "t"}, "give --claim-cert and --claim-key"},
		{"endpoint without template", []string{"--endpoint", "example.com:8883", "--claim-cert", "c", "--claim-key", "k"}, "--endpoint needs --template"},
		{"endpoint with a directory that is no localcloud's", []string{"--endpoint", "127.0.0.1:1", "--dir", "/nonexistent/lc"}, "--dir /nonexistent/lc has no localcloud CA"},
		{"bad serial prefix", []string{"--serial-prefix", "a/b"}, `serial prefix "a/b"`},
		{"unreadable claim", []string{"--endpoint", "example.com:8883", "--claim-cert", "/nonexistent/c.pem", "--claim-key", "/nonexistent/k.pem", "--template", "t"}, "--claim-cert /nonexistent/c.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, append([]string{"localcloud", "loadtest"}, tt.args...)...)
			require.Equal(t, exitConfig, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			require.Contains(t, stderr, tt.want)
		})
	}
}
