package localcloud

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// The SigV4 canonical request, computed from the headers exactly as the client listed them.
// aws-sdk-go-v2's signer never signs User-Agent, Expect or Transfer-Encoding, but AWS's C
// producer (kvssink) signs host;user-agent;x-amz-date on the control plane and
// connection;host;transfer-encoding;user-agent;x-amz-date;x-amzn-* on PutMedia, and it signs
// the Host without its port: so the verifier builds the canonical request itself, and tries
// the Host as sent, then without its port.

// signatureMatches reports whether got is the signature of r signed at signedAt with creds,
// over signedHeaders ("a;b;c", as in the Authorization header) and payloadHash.
func signatureMatches(r *http.Request, creds aws.Credentials, sc scope, signedAt time.Time, signedHeaders, payloadHash, got string) bool {
	for _, variant := range hostsAndFoldsToTry(r, signedHeaders) {
		canonical := canonicalRequest(r, variant.host, signedHeaders, payloadHash, variant.tabs)
		sum := sha256.Sum256([]byte(canonical))
		credScope := sc.date + "/" + sc.region + "/" + sc.service + "/aws4_request"
		toSign := sigV4Algorithm + "\n" + signedAt.UTC().Format(amzDateFormat) + "\n" + credScope + "\n" + hex.EncodeToString(sum[:])
		key := hmacSHA256([]byte("AWS4"+creds.SecretAccessKey), sc.date)
		key = hmacSHA256(key, sc.region)
		key = hmacSHA256(key, sc.service)
		key = hmacSHA256(key, "aws4_request")
		want := hex.EncodeToString(hmacSHA256(key, toSign))
		if subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1 {
			return true
		}
	}
	return false
}

// signingVariant is one way a client may have built its canonical request.
type signingVariant struct {
	host string
	tabs bool
}

// hostsAndFoldsToTry: each Host of hostsToTry; and where a signed header value holds a tab,
// both foldings clients use: aws-sdk-go-v2 (and SigV4's text) fold runs of spaces only,
// AWS's JavaScript SDK folds every run of white space.
func hostsAndFoldsToTry(r *http.Request, signedHeaders string) []signingVariant {
	tabs := false
	for _, name := range strings.Split(signedHeaders, ";") {
		for _, v := range r.Header.Values(name) {
			tabs = tabs || strings.ContainsAny(v, "\t\r\n\v\f")
		}
	}
	var out []signingVariant
	for _, h := range hostsToTry(r.Host) {
		out = append(out, signingVariant{host: h})
		if tabs {
			out = append(out, signingVariant{host: h, tabs: true})
		}
	}
	return out
}

// foldSpaces replaces every run of spaces with one space.
func foldSpaces(s string) string {
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' && i > 0 && s[i-1] == ' ' {
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hostsToTry is the Host as sent and, when it has a port, the host alone.
func hostsToTry(hostport string) []string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
		return []string{hostport, h}
	}
	return []string{hostport}
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// canonicalRequest is SigV4's canonical request of r.
func canonicalRequest(r *http.Request, host, signedHeaders, payloadHash string, foldTabs bool) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	// Every service but S3 URI-encodes the path once more (AWS's SigV4 rules, and
	// aws-sdk-go-v2's signer): "/a%20b" is signed as "/a%2520b".
	b.WriteString(sigV4EscapePath(path) + "\n")
	b.WriteString(canonicalQuery(r.URL.RawQuery) + "\n")
	for _, name := range strings.Split(signedHeaders, ";") {
		b.WriteString(name + ":" + canonicalHeaderValue(r, name, host, foldTabs) + "\n")
	}
	b.WriteString("\n" + signedHeaders + "\n" + payloadHash)
	return b.String()
}

// canonicalHeaderValue is a header's values, trimmed, spaces folded, joined with commas.
// Go's server moves Host, Content-Length and Transfer-Encoding out of r.Header.
func canonicalHeaderValue(r *http.Request, name, host string, foldTabs bool) string {
	var values []string
	switch name {
	case "host":
		values = []string{host}
	case "content-length":
		values = r.Header.Values(name)
		if len(values) == 0 && r.ContentLength >= 0 {
			values = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	case "transfer-encoding":
		values = r.Header.Values(name)
		if len(values) == 0 {
			values = []string{strings.Join(r.TransferEncoding, ",")}
		}
	default:
		values = r.Header.Values(name)
	}
	for i, v := range values {
		if foldTabs {
			values[i] = strings.Join(strings.Fields(v), " ")
		} else {
			values[i] = foldSpaces(strings.TrimSpace(v))
		}
	}
	return strings.Join(values, ",")
}

// canonicalQuery sorts the query by name and value, each URI-encoded as SigV4 wants.
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return raw
	}
	var pairs []string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, sigV4Escape(k)+"="+sigV4Escape(v))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

// sigV4EscapePath is sigV4Escape for a path: its slashes stay.
func sigV4EscapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = sigV4Escape(s)
	}
	return strings.Join(parts, "/")
}

// sigV4Escape percent-encodes everything but A-Z a-z 0-9 - _ . ~.
func sigV4Escape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}
