package localcloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
)

// viewerCreds returns the static key pair of viewer.json.
func viewerCreds(t *testing.T, c *Cloud) aws.Credentials {
	t.Helper()
	vc, err := c.ViewerConfig()
	require.NoError(t, err)
	return aws.Credentials{AccessKeyID: vc.AccessKeyID, SecretAccessKey: vc.SecretAccessKey}
}

func issuedCreds(c *Cloud) aws.Credentials {
	ic := c.IssueCredentials("BCM2835-00000000b211cf11")
	return aws.Credentials{AccessKeyID: ic.AccessKeyID, SecretAccessKey: ic.SecretAccessKey, SessionToken: ic.SessionToken}
}

// kvsClient is AWS's own SDK client pointed at localcloud.
func kvsClient(c *Cloud, endpoint string, creds aws.Credentials, httpClient *http.Client) *kinesisvideo.Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	return kinesisvideo.New(kinesisvideo.Options{
		Region:       c.Region(),
		Credentials:  aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }),
		BaseEndpoint: aws.String(endpoint),
		HTTPClient:   httpClient,
	})
}

func TestKVSControlPlaneWithAWSSDK(t *testing.T) {
	c := start(t, Options{KVSChannelActivation: 300 * time.Millisecond})
	for _, tc := range []struct {
		name  string
		creds aws.Credentials
	}{
		{"viewer key", viewerCreds(t, c)},
		{"issued credentials with a session token", issuedCreds(c)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := kvsClient(c, c.KVSEndpoint(), tc.creds, nil)
			ctx := ctxT(t)

			def, err := kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelName: aws.String(DefaultSignalingChannel)})
			require.NoError(t, err)
			ci := def.ChannelInfo
			require.Equal(t, DefaultSignalingChannel, aws.ToString(ci.ChannelName))
			require.Equal(t, types.StatusActive, ci.ChannelStatus)
			require.Equal(t, types.ChannelTypeSingleMaster, ci.ChannelType)
			require.Equal(t, int32(60), aws.ToInt32(ci.SingleMasterConfiguration.MessageTtlSeconds))
			require.True(t, strings.HasPrefix(aws.ToString(ci.ChannelARN), "arn:aws:kinesisvideo:us-east-1:123456789012:channel/edgecam/"), aws.ToString(ci.ChannelARN))
			require.WithinDuration(t, time.Now(), *ci.CreationTime, time.Minute)
			require.NotEmpty(t, aws.ToString(ci.Version))

			_, err = kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelName: aws.String("missing")})
			var notFound *types.ResourceNotFoundException
			require.ErrorAs(t, err, &notFound)
			require.NotEmpty(t, notFound.ErrorMessage())

			name := "cam-" + strings.ReplaceAll(tc.name, " ", "-")
			created, err := kv.CreateSignalingChannel(ctx, &kinesisvideo.CreateSignalingChannelInput{
				ChannelName: aws.String(name), ChannelType: types.ChannelTypeSingleMaster,
				SingleMasterConfiguration: &types.SingleMasterConfiguration{MessageTtlSeconds: aws.Int32(60)},
				Tags:                      []types.Tag{{Key: aws.String("site"), Value: aws.String("lab")}},
			})
			require.NoError(t, err)
			arn := aws.ToString(created.ChannelARN)
			d, err := kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelARN: aws.String(arn)})
			require.NoError(t, err)
			require.Equal(t, types.StatusCreating, d.ChannelInfo.ChannelStatus)
			_, err = kv.GetSignalingChannelEndpoint(ctx, &kinesisvideo.GetSignalingChannelEndpointInput{ChannelARN: aws.String(arn)})
			var inUse *types.ResourceInUseException
			require.ErrorAs(t, err, &inUse, "a CREATING channel has no endpoints yet")
			require.Eventually(t, func() bool {
				d, err := kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelName: aws.String(name)})
				return err == nil && d.ChannelInfo.ChannelStatus == types.StatusActive
			}, 5*time.Second, 50*time.Millisecond)

			_, err = kv.CreateSignalingChannel(ctx, &kinesisvideo.CreateSignalingChannelInput{ChannelName: aws.String(name)})
			require.ErrorAs(t, err, &inUse)
			_, err = kv.CreateSignalingChannel(ctx, &kinesisvideo.CreateSignalingChannelInput{ChannelName: aws.String("bad name!")})
			var invalid *types.InvalidArgumentException
			require.ErrorAs(t, err, &invalid)

			for _, role := range []types.ChannelRole{types.ChannelRoleMaster, types.ChannelRoleViewer} {
				ep, err := kv.GetSignalingChannelEndpoint(ctx, &kinesisvideo.GetSignalingChannelEndpointInput{
					ChannelARN: aws.String(arn),
					SingleMasterChannelEndpointConfiguration: &types.SingleMasterChannelEndpointConfiguration{
						Protocols: []types.ChannelProtocol{types.ChannelProtocolWss, types.ChannelProtocolHttps}, Role: role,
					},
				})
				require.NoError(t, err)
				host := strings.TrimPrefix(c.KVSEndpoint(), "http://")
				require.Equal(t, []types.ResourceEndpointListItem{
					{Protocol: types.ChannelProtocolWss, ResourceEndpoint: aws.String("ws://" + host + "/signaling")},
					{Protocol: types.ChannelProtocolHttps, ResourceEndpoint: aws.String("http://" + host + "/signaling-api")},
				}, ep.ResourceEndpointList)
			}
		})
	}
}

// signedPost signs a JSON POST as AWS's SDKs do, at a chosen time.
func signedPost(t *testing.T, u string, body []byte, creds aws.Credentials, region string, at time.Time) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", region, at))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func awsErrorOf(t *testing.T, resp *http.Response) (errType, message string) {
	t.Helper()
	var body map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.Header.Get("x-amzn-ErrorType"), body["message"] + body["Message"]
}

func TestKVSSignatureFailures(t *testing.T) {
	c := start(t, Options{})
	good := viewerCreds(t, c)
	issued := issuedCreds(c)
	body := []byte(`{"ChannelName":"edgecam"}`)
	u := c.KVSEndpoint() + "/describeSignalingChannel"
	for _, tc := range []struct {
		name     string
		send     func() *http.Response
		status   int
		errType  string
		contains string
	}{
		{"valid viewer key", func() *http.Response { return signedPost(t, u, body, good, "us-east-1", time.Now()) }, 200, "", ""},
		{"valid issued credentials", func() *http.Response { return signedPost(t, u, body, issued, "us-east-1", time.Now()) }, 200, "", ""},
		{"no signature", func() *http.Response {
			resp, err := http.Post(u, "application/json", bytes.NewReader(body))
			require.NoError(t, err)
			return resp
		}, 403, "MissingAuthenticationTokenException", "Missing Authentication Token"},
		{"wrong secret", func() *http.Response {
			bad := good
			bad.SecretAccessKey += "x"
			return signedPost(t, u, body, bad, "us-east-1", time.Now())
		}, 403, "InvalidSignatureException", "does not match"},
		{"unknown access key", func() *http.Response {
			bad := good
			bad.AccessKeyID = "AKIAUNKNOWN000000000"
			return signedPost(t, u, body, bad, "us-east-1", time.Now())
		}, 403, "UnrecognizedClientException", "security token"},
		{"wrong session token", func() *http.Response {
			bad := issued
			bad.SessionToken = "forged"
			return signedPost(t, u, body, bad, "us-east-1", time.Now())
		}, 403, "UnrecognizedClientException", "security token"},
		{"other region", func() *http.Response { return signedPost(t, u, body, good, "eu-west-1", time.Now()) }, 403, "InvalidSignatureException", "region"},
		{"signed 10 minutes ago", func() *http.Response {
			return signedPost(t, u, body, good, "us-east-1", time.Now().Add(-10*time.Minute))
		}, 403, "InvalidSignatureException", "Signature expired"},
		{"signed 10 minutes ahead", func() *http.Response {
			return signedPost(t, u, body, good, "us-east-1", time.Now().Add(10*time.Minute))
		}, 403, "InvalidSignatureException", "Signature not yet current"},
		{"body changed after signing", func() *http.Response {
			req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
			require.NoError(t, err)
			sum := sha256.Sum256([]byte(`{"ChannelName":"other"}`))
			require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), good, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-east-1", time.Now()))
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			return resp
		}, 403, "InvalidSignatureException", "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.send()
			defer resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode)
			date, err := http.ParseTime(resp.Header.Get("Date"))
			require.NoError(t, err)
			require.WithinDuration(t, time.Now(), date, 2*time.Second)
			if tc.status != 200 {
				errType, msg := awsErrorOf(t, resp)
				require.Equal(t, tc.errType, errType)
				require.Contains(t, msg, tc.contains)
			}
		})
	}

	// AWS's SDK sees a refused signature as an API error with AWS's code.
	bad := good
	bad.SecretAccessKey = "wrong"
	_, err := kvsClient(c, c.KVSEndpoint(), bad, nil).DescribeSignalingChannel(ctxT(t), &kinesisvideo.DescribeSignalingChannelInput{ChannelName: aws.String("edgecam")})
	var api smithy.APIError
	require.ErrorAs(t, err, &api)
	require.Equal(t, "InvalidSignatureException", api.ErrorCode())
}

func TestKVSClockSkew(t *testing.T) {
	c := start(t, Options{KVSClockSkew: 20 * time.Minute})
	creds := viewerCreds(t, c)
	u := c.KVSEndpoint() + "/describeSignalingChannel"
	body := []byte(`{"ChannelName":"edgecam"}`)

	resp := signedPost(t, u, body, creds, "us-east-1", time.Now())
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	errType, msg := awsErrorOf(t, resp)
	require.Equal(t, "InvalidSignatureException", errType)
	require.Contains(t, msg, "Signature expired")
	server, err := http.ParseTime(resp.Header.Get("Date"))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(20*time.Minute), server, 2*time.Second, "the Date header tells the server's time")

	require.Equal(t, http.StatusOK, signedPost(t, u, body, creds, "us-east-1", time.Now().Add(20*time.Minute)).StatusCode)

	require.NoError(t, c.SetKVSClockSkew(0))
	require.Equal(t, http.StatusOK, signedPost(t, u, body, creds, "us-east-1", time.Now()).StatusCode)
}

func TestKVSGetIceServerConfig(t *testing.T) {
	c := start(t, Options{})
	creds := viewerCreds(t, c)
	arn, ok := c.SignalingChannelARN(DefaultSignalingChannel)
	require.True(t, ok)
	type iceList struct {
		IceServerList []struct {
			Uris               []string
			Username, Password string
			Ttl                int
		}
	}
	call := func(t *testing.T, path string, body string) (*http.Response, iceList) {
		resp := signedPost(t, c.KVSEndpoint()+path, []byte(body), creds, "us-east-1", time.Now())
		var out iceList
		if resp.StatusCode == 200 {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		}
		return resp, out
	}
	body := `{"ChannelARN":"` + arn + `","ClientId":"ProducerMaster","Service":"TURN"}`
	resp, out := call(t, "/signaling-api/v1/get-ice-server-config", body)
	require.Equal(t, 200, resp.StatusCode)
	require.NotNil(t, out.IceServerList, "an empty list, not null")
	require.Empty(t, out.IceServerList)

	require.NoError(t, c.SetKVSICEServers([]ICEServerConfig{{URIs: []string{"turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp"}, Username: "u", Password: "p"}}))
	for _, path := range []string{"/signaling-api/v1/get-ice-server-config", "/v1/get-ice-server-config"} {
		resp, out = call(t, path, body)
		require.Equal(t, 200, resp.StatusCode)
		require.Len(t, out.IceServerList, 1)
		s := out.IceServerList[0]
		require.Equal(t, []string{"turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp"}, s.Uris)
		require.Equal(t, "u", s.Username)
		require.Equal(t, "p", s.Password)
		require.Equal(t, 300, s.Ttl)
	}
	resp, _ = call(t, "/v1/get-ice-server-config", `{"ChannelARN":"arn:aws:kinesisvideo:us-east-1:123456789012:channel/nope/1","Service":"TURN"}`)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	errType, _ := awsErrorOf(t, resp)
	require.Equal(t, "ResourceNotFoundException", errType)
}

// presign builds a signaling WebSocket URL as AWS's SDKs do (v4 query presign, host only,
// empty-payload hash, X-Amz-Expires=299).
func presign(t *testing.T, wss, arn, clientID string, creds aws.Credentials, at time.Time) string {
	t.Helper()
	q := url.Values{"X-Amz-ChannelARN": {arn}}
	if clientID != "" {
		q.Set("X-Amz-ClientId", clientID)
	}
	return presignQuery(t, wss, q, creds, at)
}

func presignQuery(t *testing.T, wss string, q url.Values, creds aws.Credentials, at time.Time) string {
	t.Helper()
	q.Set("X-Amz-Expires", "299")
	req, err := http.NewRequest(http.MethodGet, wss+"?"+q.Encode(), nil)
	require.NoError(t, err)
	empty := sha256.Sum256(nil) // computed here, not the package's constant
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, hex.EncodeToString(empty[:]), "kinesisvideo", "us-east-1", at)
	require.NoError(t, err)
	return signed
}

func TestKVSPresignVerification(t *testing.T) {
	c := start(t, Options{})
	good := viewerCreds(t, c)
	issued := issuedCreds(c)
	arn, _ := c.SignalingChannelARN(DefaultSignalingChannel)
	wss := "ws://" + strings.TrimPrefix(c.KVSEndpoint(), "http://") + "/signaling"
	edit := func(raw string, fn func(q url.Values)) string {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		q := u.Query()
		fn(q)
		u.RawQuery = q.Encode()
		return u.String()
	}
	for _, tc := range []struct {
		name    string
		url     func() string
		status  int
		errType string
	}{
		{"valid viewer", func() string { return presign(t, wss, arn, "viewer-1", good, time.Now()) }, 101, ""},
		{"valid master with a session token", func() string { return presign(t, wss, arn, "", issued, time.Now()) }, 101, ""},
		{"expired", func() string { return presign(t, wss, arn, "v", good, time.Now().Add(-6*time.Minute)) }, 403, "InvalidSignatureException"},
		{"from the future", func() string { return presign(t, wss, arn, "v", good, time.Now().Add(6*time.Minute)) }, 403, "InvalidSignatureException"},
		{"no signature", func() string {
			return edit(presign(t, wss, arn, "v", good, time.Now()), func(q url.Values) { q.Del("X-Amz-Signature") })
		}, 403, "IncompleteSignatureException"},
		{"channel changed after signing", func() string {
			return edit(presign(t, wss, arn, "v", good, time.Now()), func(q url.Values) { q.Set("X-Amz-ChannelARN", arn+"x") })
		}, 403, "InvalidSignatureException"},
		{"client ID changed after signing", func() string {
			return edit(presign(t, wss, arn, "v", good, time.Now()), func(q url.Values) { q.Set("X-Amz-ClientId", "w") })
		}, 403, "InvalidSignatureException"},
		{"session token added after signing", func() string {
			noToken := issued
			noToken.SessionToken = ""
			return edit(presign(t, wss, arn, "", noToken, time.Now()), func(q url.Values) { q.Set("X-Amz-Security-Token", issued.SessionToken) })
		}, 403, "InvalidSignatureException"},
		{"wrong secret", func() string {
			bad := good
			bad.SecretAccessKey = "nope"
			return presign(t, wss, arn, "v", bad, time.Now())
		}, 403, "InvalidSignatureException"},
		{"unknown channel", func() string {
			return presign(t, wss, "arn:aws:kinesisvideo:us-east-1:123456789012:channel/none/1", "", good, time.Now())
		}, 404, "ResourceNotFoundException"},
		{"client ID with the AWS_ prefix", func() string { return presign(t, wss, arn, "AWS_x", good, time.Now()) }, 400, "InvalidArgumentException"},
		{"client ID with a space", func() string { return presign(t, wss, arn, "a b", good, time.Now()) }, 400, "InvalidArgumentException"},
		{"client ID of 257 characters", func() string { return presign(t, wss, arn, strings.Repeat("a", 257), good, time.Now()) }, 400, "InvalidArgumentException"},
		{"empty client ID", func() string {
			return presignQuery(t, wss, url.Values{"X-Amz-ChannelARN": {arn}, "X-Amz-ClientId": {""}}, good, time.Now())
		}, 400, "InvalidArgumentException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, resp, err := dialWS(t, tc.url())
			if tc.status == 101 {
				require.NoError(t, err)
				conn.CloseNow()
				return
			}
			require.Error(t, err)
			require.NotNil(t, resp)
			require.Equal(t, tc.status, resp.StatusCode)
			require.Equal(t, tc.errType, resp.Header.Get("x-amzn-ErrorType"))
		})
	}
}

func TestKVSOverTLS(t *testing.T) {
	c := start(t, Options{})
	httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.CAPool()}}}
	kv := kvsClient(c, c.KVSTLSEndpoint(), viewerCreds(t, c), httpClient)
	arn, _ := c.SignalingChannelARN(DefaultSignalingChannel)
	ep, err := kv.GetSignalingChannelEndpoint(ctxT(t), &kinesisvideo.GetSignalingChannelEndpointInput{ChannelARN: aws.String(arn)})
	require.NoError(t, err)
	host := strings.TrimPrefix(c.KVSTLSEndpoint(), "https://")
	require.Equal(t, "wss://"+host+"/signaling", aws.ToString(ep.ResourceEndpointList[0].ResourceEndpoint))
	require.Equal(t, "https://"+host+"/signaling-api", aws.ToString(ep.ResourceEndpointList[1].ResourceEndpoint))

	conn, _, err := dialWSWith(t, presign(t, "wss://"+host+"/signaling", arn, "", viewerCreds(t, c), time.Now()), httpClient)
	require.NoError(t, err)
	defer conn.CloseNow()
	conn.CloseRead(context.Background()) // a reader must run for the pong to arrive
	require.NoError(t, conn.Ping(ctxT(t)))
}

func TestViewerConfigFile(t *testing.T) {
	dir := t.TempDir()
	c := start(t, Options{Dir: dir})
	data, err := os.ReadFile(c.ViewerConfigPath())
	require.NoError(t, err)
	var vc map[string]string
	require.NoError(t, json.Unmarshal(data, &vc))
	require.Equal(t, "us-east-1", vc["region"])
	require.Equal(t, DefaultSignalingChannel, vc["channelName"])
	require.Equal(t, c.KVSEndpoint(), vc["controlPlaneUrl"])
	require.Regexp(t, `^AKIA[A-Z2-7]{16}$`, vc["accessKeyId"])
	require.Len(t, vc["secretAccessKey"], 40)
	st, err := os.Stat(c.ViewerConfigPath())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	arn, _ := c.SignalingChannelARN(DefaultSignalingChannel)

	// A master on another channel: viewer.json names it.
	camARN, err := c.CreateSignalingChannel("cam-2")
	require.NoError(t, err)
	wss := "ws://" + strings.TrimPrefix(c.KVSEndpoint(), "http://") + "/signaling"
	conn, _, err := dialWS(t, presign(t, wss, camARN, "", viewerCreds(t, c), time.Now()))
	require.NoError(t, err)
	defer conn.CloseNow()
	require.Eventually(t, func() bool {
		data, _ := os.ReadFile(c.ViewerConfigPath())
		return strings.Contains(string(data), `"channelName": "cam-2"`)
	}, 5*time.Second, 20*time.Millisecond)

	// The key pair and the channels survive a restart.
	require.NoError(t, c.Close())
	c2 := start(t, Options{Dir: dir})
	vc2, err := c2.ViewerConfig()
	require.NoError(t, err)
	require.Equal(t, vc["accessKeyId"], vc2.AccessKeyID)
	require.Equal(t, vc["secretAccessKey"], vc2.SecretAccessKey)
	arn2, ok := c2.SignalingChannelARN(DefaultSignalingChannel)
	require.True(t, ok)
	require.Equal(t, arn, arn2)
	cam2, ok := c2.SignalingChannelARN("cam-2")
	require.True(t, ok)
	require.Equal(t, camARN, cam2)
}

func TestKVSUnknownOperation(t *testing.T) {
	c := start(t, Options{})
	resp := signedPost(t, c.KVSEndpoint()+"/deleteEverything", []byte(`{}`), viewerCreds(t, c), "us-east-1", time.Now())
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	errType, _ := awsErrorOf(t, resp)
	require.Equal(t, "UnknownOperationException", errType)
}
