package localcloud

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sigV4 constants of the KVS stand-in.
const (
	sigV4Algorithm = "AWS4-HMAC-SHA256"
	sigV4Service   = "kinesisvideo"
	amzDateFormat  = "20060102T150405Z"
	// sigV4Window is how far a header signature's time may be from the server's (AWS: 5 min).
	sigV4Window = 5 * time.Minute
	// maxPresignExpiry is the longest X-Amz-Expires AWS accepts (7 days).
	maxPresignExpiry = 7 * 24 * time.Hour
	emptySHA256      = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// awsError is an AWS JSON error: an HTTP status, the x-amzn-ErrorType header and a body
// {"Message": "..."} (services) or {"message": "..."} (AWS's authentication front end).
type awsError struct {
	Status  int
	Type    string
	Message string
	// lowerKey writes "message" instead of "Message".
	lowerKey bool
}

func (e *awsError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

func authError(errType, format string, args ...any) *awsError {
	return &awsError{Status: http.StatusForbidden, Type: errType, Message: fmt.Sprintf(format, args...), lowerKey: true}
}

func serviceError(status int, errType, format string, args ...any) *awsError {
	return &awsError{Status: status, Type: errType, Message: fmt.Sprintf(format, args...)}
}

// write sends the error. The Date header has been set by the caller (the server's clock).
func (e *awsError) write(w http.ResponseWriter) {
	key := "Message"
	if e.lowerKey {
		key = "message"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-amzn-ErrorType", e.Type)
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{key: e.Message})
}

// secretLookup finds the secret (and session token, empty for long-term keys) of an access
// key ID, and names its owner for the logs.
type secretLookup func(accessKeyID string) (creds aws.Credentials, principal string, ok bool)

// sigV4Verifier checks AWS Signature Version 4 the way AWS does, by signing the request
// again with aws-sdk-go-v2's signer and the secret it knows, and comparing.
type sigV4Verifier struct {
	region string
	now    func() time.Time
	lookup secretLookup
	signer *v4.Signer
}

func newSigV4Verifier(region string, now func() time.Time, lookup secretLookup) *sigV4Verifier {
	return &sigV4Verifier{region: region, now: now, lookup: lookup, signer: v4.NewSigner()}
}

// scope is a parsed credential: <access key>/<date>/<region>/<service>/aws4_request.
type scope struct {
	accessKeyID, date, region, service string
}

func parseScope(s string) (scope, bool) {
	p := strings.Split(s, "/")
	if len(p) != 5 || p[4] != "aws4_request" || p[0] == "" {
		return scope{}, false
	}
	return scope{accessKeyID: p[0], date: p[1], region: p[2], service: p[3]}, true
}

// checkScope checks the credential scope against the request's time and this endpoint,
// and finds the secret.
func (v *sigV4Verifier) checkScope(sc scope, signed time.Time, sessionToken string) (aws.Credentials, string, *awsError) {
	if sc.date != signed.Format("20060102") {
		return aws.Credentials{}, "", authError("InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s'", sc.date, signed.Format("20060102"))
	}
	if sc.region != v.region {
		return aws.Credentials{}, "", authError("InvalidSignatureException", "Credential should be scoped to a valid region, not '%s'. ", sc.region)
	}
	if sc.service != sigV4Service {
		return aws.Credentials{}, "", authError("InvalidSignatureException", "Credential should be scoped to correct service: '%s'. ", sigV4Service)
	}
	creds, principal, ok := v.lookup(sc.accessKeyID)
	if !ok {
		return aws.Credentials{}, "", authError("UnrecognizedClientException", "The security token included in the request is invalid.")
	}
	if creds.SessionToken != "" && sessionToken != creds.SessionToken {
		return aws.Credentials{}, "", authError("UnrecognizedClientException", "The security token included in the request is invalid.")
	}
	if creds.SessionToken == "" {
		// Long-term keys: sign with whatever token came along (none, normally).
		creds.SessionToken = sessionToken
	}
	return creds, principal, nil
}

// verifyHeader checks a request signed in its Authorization header; body is its payload.
func (v *sigV4Verifier) verifyHeader(r *http.Request, body []byte) (string, *awsError) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "", authError("MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	fields, ok := strings.CutPrefix(auth, sigV4Algorithm+" ")
	if !ok {
		return "", authError("IncompleteSignatureException", "Authorization header requires the %s algorithm.", sigV4Algorithm)
	}
	parts := authFields(fields)
	sc, okScope := parseScope(parts["Credential"])
	if !okScope || parts["SignedHeaders"] == "" || parts["Signature"] == "" {
		return "", authError("IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization=%s", auth)
	}
	signed, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "", authError("IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	if e := v.checkTime(signed, signed.Add(sigV4Window)); e != nil {
		return "", e
	}
	creds, principal, e := v.checkScope(sc, signed, r.Header.Get("X-Amz-Security-Token"))
	if e != nil {
		return "", e
	}

	// The canonical request is built from the headers as the client listed them (AWS's
	// producer signs User-Agent and Transfer-Encoding, and the Host without its port).
	signedHeaders := parts["SignedHeaders"]
	hash := r.Header.Get("X-Amz-Content-Sha256")
	if hash == "" || !slices.Contains(strings.Split(signedHeaders, ";"), "x-amz-content-sha256") {
		sum := sha256.Sum256(body)
		hash = hex.EncodeToString(sum[:])
	}
	if !signatureMatches(r, creds, sc, signed, signedHeaders, hash, parts["Signature"]) {
		return "", authError("InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return principal, nil
}

// verifyPresign checks a URL presigned in its query (the signaling WebSocket): the query
// minus X-Amz-Signature is signed again and the signatures compared.
func (v *sigV4Verifier) verifyPresign(r *http.Request) (string, *awsError) {
	q := r.URL.Query()
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"} {
		if q.Get(k) == "" {
			return "", authError("IncompleteSignatureException", "AWS query-string parameters must include '%s'. Re-examine the query-string parameters.", k)
		}
	}
	if q.Get("X-Amz-Algorithm") != sigV4Algorithm {
		return "", authError("IncompleteSignatureException", "X-Amz-Algorithm only supports '%s'", sigV4Algorithm)
	}
	sc, ok := parseScope(q.Get("X-Amz-Credential"))
	if !ok {
		return "", authError("IncompleteSignatureException", "X-Amz-Credential %q is not <key>/<date>/<region>/<service>/aws4_request", q.Get("X-Amz-Credential"))
	}
	signed, err := time.Parse(amzDateFormat, q.Get("X-Amz-Date"))
	if err != nil {
		return "", authError("IncompleteSignatureException", "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
	}
	expires := maxPresignExpiry
	if s := q.Get("X-Amz-Expires"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || int64(n) > int64(maxPresignExpiry/time.Second) { // compared in seconds: n·1e9 may overflow
			return "", authError("IncompleteSignatureException", "X-Amz-Expires must be a number of seconds from 1 to 604800")
		}
		expires = time.Duration(n) * time.Second
	}
	if e := v.checkTime(signed, signed.Add(expires)); e != nil {
		return "", e
	}
	creds, principal, e := v.checkScope(sc, signed, q.Get("X-Amz-Security-Token"))
	if e != nil {
		return "", e
	}
	got := q.Get("X-Amz-Signature")
	q.Del("X-Amz-Signature")
	cp, e := signingCopy(r, q.Encode(), strings.Split(q.Get("X-Amz-SignedHeaders"), ";"))
	if e != nil {
		return "", e
	}
	signedURL, _, err := v.signer.PresignHTTP(context.Background(), creds, cp, emptySHA256, sigV4Service, v.region, signed,
		func(o *v4.SignerOptions) { o.DisableHeaderHoisting = true })
	if err != nil {
		return "", authError("IncompleteSignatureException", "%v", err)
	}
	su, err := url.Parse(signedURL)
	if err != nil {
		return "", authError("IncompleteSignatureException", "%v", err)
	}
	want := su.Query()
	if want.Get("X-Amz-SignedHeaders") != q.Get("X-Amz-SignedHeaders") || subtle.ConstantTimeCompare([]byte(want.Get("X-Amz-Signature")), []byte(got)) != 1 {
		return "", authError("InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return principal, nil
}

// checkTime refuses a signature made more than the window ahead of the server's clock, or
// used after validUntil.
func (v *sigV4Verifier) checkTime(signed, validUntil time.Time) *awsError {
	now := v.now().UTC()
	if signed.After(now.Add(sigV4Window)) {
		return authError("InvalidSignatureException", "Signature not yet current: %s is still later than %s (%s + 5 min.)",
			signed.Format(amzDateFormat), now.Add(sigV4Window).Format(amzDateFormat), now.Format(amzDateFormat))
	}
	if now.After(validUntil) {
		return authError("InvalidSignatureException", "Signature expired: %s is now earlier than %s (%s - %s.)",
			signed.Format(amzDateFormat), now.Add(-validUntil.Sub(signed)).Format(amzDateFormat), now.Format(amzDateFormat), shortDuration(validUntil.Sub(signed)))
	}
	return nil
}

// shortDuration writes 5m0s as AWS does: "5 min", 299s as "299 sec".
func shortDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", int(d/time.Minute))
	}
	return fmt.Sprintf("%d sec", int(d/time.Second))
}

// authFields splits "k=v, k=v" (an Authorization header after its algorithm).
func authFields(s string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Split(s, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(f), "=")
		out[k] = val
	}
	return out
}

// signingCopy rebuilds the request the client signed, with rawQuery and only the headers
// it signed, to be signed again and compared. The scheme does not enter the signature;
// content-length, when signed, is the caller's to set.
func signingCopy(r *http.Request, rawQuery string, signedHeaders []string) (*http.Request, *awsError) {
	u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: rawQuery}
	cp, err := http.NewRequestWithContext(context.Background(), r.Method, u.String(), nil)
	if err != nil {
		return nil, authError("IncompleteSignatureException", "unreadable request URL")
	}
	cp.Host = r.Host
	for _, h := range signedHeaders {
		if h == "host" || h == "content-length" {
			continue
		}
		for _, val := range r.Header.Values(h) {
			cp.Header.Add(h, val)
		}
	}
	return cp, nil
}
