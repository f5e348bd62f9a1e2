package media

import (
	"testing"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/stretchr/testify/require"
)

func TestKVSDescription(t *testing.T) {
	base := config.Default().Recording.KVS
	tests := []struct {
		name string
		opts KVSOptions
		want []string
		err  string
	}{
		{"credential file", KVSOptions{Config: base, StreamName: "cam-1", Region: "eu-west-1", CredentialFile: "/var/lib/edgecam/kvssink-credentials"},
			[]string{"h264parse ! video/x-h264,stream-format=avc,alignment=au ! kvssink name=kvs", `stream-name="cam-1"`, `aws-region="eu-west-1"`,
				"storage-size=128", "fragment-duration=2000", "key-frame-fragmentation=true", "streaming-type=0", "retention-period=24",
				`credential-path="/var/lib/edgecam/kvssink-credentials"`}, ""},
		{"iot certificate", KVSOptions{Config: func() config.KVS {
			c := base
			c.Auth = config.KVSAuthIoTCertificate
			c.StreamingType = "offline"
			c.FragmentDuration = 4 * time.Second
			return c
		}(),
			StreamName: "stream-x", Region: "us-east-1", IoTEndpoint: "c2ex.credentials.iot.us-east-1.amazonaws.com", CertPath: "/s/device.crt", KeyPath: "/s/key.pem", CAPath: "/s/ca.pem", RoleAlias: "edgecam-kvs", ThingName: "cam-1"},
			[]string{`iot-certificate="iot-certificate,endpoint=c2ex.credentials.iot.us-east-1.amazonaws.com,cert-path=/s/device.crt,key-path=/s/key.pem,ca-path=/s/ca.pem,role-aliases=edgecam-kvs,iot-thing-name=cam-1"`,
				"streaming-type=2", "fragment-duration=4000"}, ""},
		{"no stream name", KVSOptions{Config: base, CredentialFile: "/x"}, nil, "no stream name"},
		{"no credential file", KVSOptions{Config: base, StreamName: "s"}, nil, "set credentials.endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desc, err := KVSDescription(tt.opts)
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
