package iot_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecam/edgecam/iot"
	"github.com/edgecam/edgecam/localcloud"
	"github.com/edgecam/edgecam/provisioning"
	"github.com/stretchr/testify/require"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a/b/c", true},
		{"a/#", "a", true},
		{"+/b", "a/b", true},
		{"#", "a/b", true},
		{"#", "$aws/things/x", false},
		{"+/things/x", "$aws/things/x", false},
		{"$aws/things/+/shadow", "$aws/things/x/shadow", true},
		{"a/b", "a/c", false},
		{"a/b/c", "a/b", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, iot.Match(tt.filter, tt.topic), "%s ~ %s", tt.filter, tt.topic)
	}
}

func TestDialErrors(t *testing.T) {
	_, err := iot.Dial(context.Background(), iot.Options{ClientID: "x"})
	require.ErrorContains(t, err, "set iot.endpoint")
	_, err = iot.Dial(context.Background(), iot.Options{Endpoint: "localhost", ClientID: ""})
	require.ErrorContains(t, err, "client ID")
}

// TestReconnectRestoresSubscriptions drops the device's connection at the broker: the
// connection comes back by itself, subscriptions included, and OnConnect runs again.
func TestReconnectRestoresSubscriptions(t *testing.T) {
	dir := t.TempDir()
	cloud, err := localcloud.Open(localcloud.Options{Dir: dir, AllowSerials: []string{"cam-1"}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, cloud.Start(ctx))
	defer cloud.Close()

	claim, err := tls.LoadX509KeyPair(cloud.Paths().ClaimCert, cloud.Paths().ClaimKey)
	require.NoError(t, err)
	store, err := provisioning.OpenStore(t.TempDir())
	require.NoError(t, err)
	id, err := provisioning.Provision(ctx, store, provisioning.FleetOptions{
		Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), ClaimCert: claim, Template: cloud.Template(), Serial: "cam-1", Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	cert, err := store.TLSCertificate(id)
	require.NoError(t, err)

	var connects atomic.Int32
	conn, err := iot.Dial(ctx, iot.Options{
		Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), Certificate: cert, ClientID: id.ThingName,
		OnConnect: func() { connects.Add(1) },
	})
	require.NoError(t, err)
	defer conn.Close(context.Background())
	got := make(chan string, 8)
	conn.Handle("edgecam/cam-1/cmd/#", func(m iot.Message) { got <- string(m.Payload) })
	require.NoError(t, conn.Subscribe(ctx, "edgecam/cam-1/cmd/#"))
	require.Eventually(t, func() bool { return connects.Load() == 1 }, 5*time.Second, 10*time.Millisecond)

	require.True(t, cloud.DisconnectClient(id.ThingName))
	require.Eventually(t, func() bool { return connects.Load() == 2 && conn.Connected() }, 20*time.Second, 20*time.Millisecond)

	// A message published to the subscription after the reconnect arrives.
	other, err := iot.Dial(ctx, iot.Options{Endpoint: cloud.MQTTEndpoint(), RootCAs: cloud.CAPool(), Certificate: cert, ClientID: "cam-1-other"})
	if err == nil {
		other.Close(context.Background())
		t.Fatal("a second client ID with the same certificate must be refused")
	}
	require.NoError(t, conn.Publish(ctx, "edgecam/cam-1/cmd/ping", []byte("hello"), 1))
	select {
	case p := <-got:
		require.Equal(t, "hello", p)
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not restored after reconnect")
	}
}

func TestDialTimesOutWithHint(t *testing.T) {
	// A TCP listener that never answers MQTT: the dial gives up after ConnectTimeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = iot.Dial(context.Background(), iot.Options{Endpoint: ln.Addr().String(), ClientID: "x", ConnectTimeout: 2 * time.Second})
	var ce *iot.ConnectError
	require.ErrorAs(t, err, &ce)
	require.True(t, ce.Temporary)
	require.Less(t, time.Since(start), 15*time.Second)
}
