package media

import (
	"fmt"
	"strings"

	"github.com/edgecam/edgecam/config"
)

// KVSOptions configure recording into Kinesis Video Streams with kvssink.
type KVSOptions struct {
	Config config.KVS
	// StreamName is the stream (config's, or the thing name).
	StreamName string
	Region     string
	// CredentialFile is kvssink's credential-path (auth credential_file).
	CredentialFile string
	// IoT* configure kvssink's own IoT credentials fetch (auth iot_certificate).
	IoTEndpoint, CertPath, KeyPath, CAPath, RoleAlias, ThingName string
}

// streamingTypes are kvssink's streaming-type enum values.
var streamingTypes = map[string]int{"realtime": 0, "near-realtime": 1, "offline": 2}

// KVSDescription returns the description of a kvssink recording pipeline fed by an appsrc
// named RecorderSrc. kvssink takes AVC (length-prefixed) H.264 only, hence the h264parse.
func KVSDescription(o KVSOptions) (string, error) {
	c := o.Config
	if o.StreamName == "" {
		return "", fmt.Errorf("recording.kvs: no stream name (set recording.kvs.stream_name, or provision the device)")
	}
	st, ok := streamingTypes[c.StreamingType]
	if !ok {
		return "", fmt.Errorf("recording.kvs.streaming_type %q is not supported", c.StreamingType)
	}
	var auth string
	switch c.Auth {
	case config.KVSAuthCredentialFile:
		if o.CredentialFile == "" {
			return "", fmt.Errorf("recording.kvs.auth credential_file: no credential file (set credentials.endpoint)")
		}
		auth = "credential-path=" + quote(o.CredentialFile)
	case config.KVSAuthIoTCertificate:
		// A GstStructure whose values are all strings; without iot-thing-name kvssink uses
		// the stream name, and the credentials provider answers 403 when they differ.
		auth = "iot-certificate=" + quote(fmt.Sprintf("iot-certificate,endpoint=%s,cert-path=%s,key-path=%s,ca-path=%s,role-aliases=%s,iot-thing-name=%s",
			o.IoTEndpoint, o.CertPath, o.KeyPath, o.CAPath, o.RoleAlias, o.ThingName))
	default:
		return "", fmt.Errorf("recording.kvs.auth %q is not supported", c.Auth)
	}
	parts := []string{
		appsrcH264, "h264parse", "video/x-h264,stream-format=avc,alignment=au",
		fmt.Sprintf("kvssink name=%s stream-name=%s aws-region=%s storage-size=%d fragment-duration=%d key-frame-fragmentation=true "+
			"streaming-type=%d retention-period=%d restart-on-error=true %s",
			KVSSinkName, quote(o.StreamName), quote(o.Region), c.StorageSizeMB, c.FragmentDuration.Milliseconds(), st, c.RetentionHours, auth),
	}
	return strings.Join(parts, " ! "), nil
}
