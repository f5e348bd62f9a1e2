package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// kvsPluginCandidates are where the agent looks for libgstkvssink.so when
// recording.kvs.plugin_dir is empty: next to the binary (a tarball or build tree), then the
// .deb's private plugin directory.
func kvsPluginCandidates() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	dir := filepath.Dir(exe)
	return []string{filepath.Join(dir, "gstreamer-1.0"), filepath.Join(dir, "..", "lib", "edgecam", "gstreamer-1.0")}
}

// findKVSSink makes kvssink available (recording.kvs.plugin_dir, next to the binary, or
// GStreamer's path) and reports whether it is. A plugin_dir without kvssink is a
// configuration error.
func findKVSSink(cfg config.Config, log *zap.Logger) (bool, error) {
	found, err := media.FindKVSSink(cfg.Recording.KVS.PluginDir, kvsPluginCandidates())
	if err != nil {
		return false, err
	}
	if found == "" {
		return false, nil
	}
	log.Info("kvssink found", zap.String("where", found))
	return true, nil
}

// kvsCACert is the CA file kvssink trusts for its control plane: recording.kvs.ca_cert, else
// iot.ca_cert for an https:// control_plane_uri (a private cloud such as localcloud).
func kvsCACert(cfg config.Config) string {
	k := cfg.Recording.KVS
	if k.CACert != "" {
		return k.CACert
	}
	if strings.HasPrefix(k.ControlPlaneURI, "https://") {
		return cfg.IoT.CACert
	}
	return ""
}

// kvssinkCAFile returns a CA file kvssink accepts: kvssink takes only a directory or a file
// whose name ends in .pem, so another name (AmazonRootCA1.crt, …) is copied to dir/ca.pem.
func kvssinkCAFile(path, dir string) (string, error) {
	if path == "" || strings.HasSuffix(strings.ToLower(path), ".pem") {
		return path, nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return path, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("recording.kvs.ca_cert: %w", err)
	}
	dst := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		return "", fmt.Errorf("kvssink CA file: %w", err)
	}
	return dst, nil
}

// newKVSRecorder builds the kvssink recorder for stream: kvssink's log routed into the
// agent's (log4cplus configuration in <state_dir>/kvssink/, followed until ctx ends), its
// control plane, CA and start-up time-out, and a preflight that checks (and, when allowed,
// creates) the stream through the KVS API before each kvssink starts.
func (a *Agent) newKVSRecorder(ctx context.Context, dev *device, stream string) (*media.KVSSinkRecorder, error) {
	cfg := a.cfg
	k := cfg.Recording.KVS
	log := a.log.Named("kvs")
	klog, err := media.StartKVSSinkLog(filepath.Join(cfg.StateDir, "kvssink"), log.Named("kvssink"), log.Core().Enabled(zapcore.DebugLevel))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, klog.Close)
	ca, err := kvssinkCAFile(kvsCACert(cfg), filepath.Join(cfg.StateDir, "kvssink"))
	if err != nil {
		klog.Close()
		return nil, err
	}
	id, store := dev.id, dev.store
	host, _, _ := strings.Cut(cfg.Credentials.Endpoint, ":")
	auth := media.KVSAuthCredentialFile
	if k.Auth == config.KVSAuthIoTCertificate {
		auth = media.KVSAuthIoTCertificate
	}
	o := media.KVSSinkOptions{
		StreamName: stream, Region: cfg.AWS.Region, StorageSizeMB: k.StorageSizeMB, FragmentDuration: k.FragmentDuration,
		RetentionHours: k.RetentionHours, StreamingType: k.StreamingType, CreateStream: k.CreateStream,
		Auth: auth, CredentialFile: cfg.KVSSinkCredentialFile(),
		IoTEndpoint: host, CertPath: store.CertPath(), KeyPath: store.KeyPath(id), CAPath: store.CAPath(),
		RoleAlias: cfg.Credentials.RoleAlias, ThingName: id.ThingName,
		ControlPlaneURI: k.ControlPlaneURI, CACertPath: ca,
		LogConfig: klog.ConfigPath(), StartupTimeout: k.StartupTimeout, Log: log,
	}
	if cfg.Credentials.Endpoint != "" {
		o.Preflight = kvsPreflight(cfg, dev, a.Credentials, stream, log)
	}
	rec, err := media.NewKVSSinkRecorder(o)
	if err != nil {
		klog.Close()
		return nil, err
	}
	return rec, nil
}

// kvsPreflight checks that the stream's control plane answers, and that the stream exists,
// creating it when recording.kvs.create_stream allows; kvssink would otherwise block in its
// own set-up for minutes without saying why.
func kvsPreflight(cfg config.Config, dev *device, creds func() aws.CredentialsProvider, stream string, log *zap.Logger) func(context.Context) error {
	k := cfg.Recording.KVS
	pool := dev.pool
	client := kinesisvideo.New(kinesisvideo.Options{
		Region: cfg.AWS.Region,
		Credentials: aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
			p := creds()
			if p == nil {
				return aws.Credentials{}, errors.New("no AWS credentials yet (credentials.endpoint)")
			}
			return p.Retrieve(ctx)
		}),
		HTTPClient: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
		}},
		RetryMaxAttempts: 1,
	}, func(o *kinesisvideo.Options) {
		if k.ControlPlaneURI != "" {
			o.BaseEndpoint = aws.String(k.ControlPlaneURI)
		}
	})
	where := "kinesisvideo." + cfg.AWS.Region + ".amazonaws.com"
	if k.ControlPlaneURI != "" {
		where = k.ControlPlaneURI
	}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := client.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(stream)})
		var notFound *types.ResourceNotFoundException
		switch {
		case err == nil:
			if out.StreamInfo != nil && out.StreamInfo.Status == types.StatusCreating {
				return waitStreamActive(ctx, client, stream)
			}
			return nil
		case errors.As(err, &notFound) && k.CreateStream:
			_, err = client.CreateStream(ctx, &kinesisvideo.CreateStreamInput{
				StreamName: aws.String(stream), MediaType: aws.String("video/h264"), DeviceName: aws.String(dev.id.ThingName),
				DataRetentionInHours: aws.Int32(int32(k.RetentionHours)),
				Tags:                 map[string]string{"edgecam:thing": dev.id.ThingName},
			})
			var inUse *types.ResourceInUseException
			if err == nil || errors.As(err, &inUse) {
				log.Info("KVS stream created", zap.String("stream", stream), zap.Int("retention_hours", k.RetentionHours))
				// kvssink fails on a stream that is still CREATING.
				return waitStreamActive(ctx, client, stream)
			}
			return fmt.Errorf("KVS stream %s does not exist and could not be created at %s: %w (the role alias needs kinesisvideo:CreateStream, or create the stream yourself)", stream, where, err)
		case errors.As(err, &notFound):
			return fmt.Errorf("KVS stream %s does not exist at %s and recording.kvs.create_stream is false: create it, or allow the agent to", stream, where)
		}
		var re *awshttp.ResponseError
		if errors.As(err, &re) && (re.HTTPStatusCode() == http.StatusForbidden || re.HTTPStatusCode() == http.StatusUnauthorized) {
			// Refused credentials (an issuer that restarted, a revocation): fetch new ones now
			// and have the credential file rewritten, instead of at the end of their period;
			// the next kvssink reads them.
			if inv, ok := creds().(interface{ Invalidate() }); ok {
				inv.Invalidate()
				log.Warn("KVS refused the credentials: fetching new ones", zap.String("stream", stream), zap.Error(err))
			}
			return fmt.Errorf("KVS control plane %s refused the credentials for DescribeStream of %s (the role alias needs kinesisvideo:DescribeStream): %w", where, stream, err)
		}
		return fmt.Errorf("KVS control plane %s unreachable or refusing DescribeStream for %s: %w", where, stream, err)
	}
}

// waitStreamActive waits until a new stream leaves CREATING (AWS: a few seconds).
func waitStreamActive(ctx context.Context, client *kinesisvideo.Client, stream string) error {
	for {
		out, err := client.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(stream)})
		if err == nil && out.StreamInfo != nil && out.StreamInfo.Status != types.StatusCreating {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("KVS stream %s did not become active: %w", stream, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
