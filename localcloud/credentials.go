package localcloud

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// IssuedCredentials are temporary credentials handed out by the credentials endpoint.
type IssuedCredentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
	ThingName       string
	RoleAlias       string
}

// credentialStore remembers issued credentials, so that the stand-ins for AWS services
// can verify requests signed with them.
type credentialStore struct {
	path  string // where they are kept across restarts (credentialsfile.go)
	mu    sync.Mutex
	byKey map[string]IssuedCredentials
}

// issue mints temporary credentials for a thing's role alias, as the credentials provider
// does, and keeps them so that signed requests can be checked.
func (s *credentialStore) issue(thing, alias string, lifetime time.Duration) IssuedCredentials {
	c := IssuedCredentials{
		AccessKeyID:     "ASIA" + randomUpper(16),
		SecretAccessKey: randomBase64(30),
		SessionToken:    randomBase64(300),
		Expiration:      time.Now().Add(lifetime).UTC().Truncate(time.Second),
		ThingName:       thing,
		RoleAlias:       alias,
	}
	s.add(c)
	return c
}

func (s *credentialStore) add(c IssuedCredentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for k, v := range s.byKey {
		if now.After(v.Expiration) {
			delete(s.byKey, k)
		}
	}
	s.byKey[c.AccessKeyID] = c
	_ = s.saveLocked() // best effort: they work until a restart all the same
}

// Lookup returns the credentials for an access key ID that has not expired.
func (s *credentialStore) Lookup(accessKeyID string) (IssuedCredentials, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byKey[accessKeyID]
	if !ok || time.Now().After(c.Expiration) {
		return IssuedCredentials{}, false
	}
	return c, true
}

// credentialsEndpoint stands in for the AWS IoT credentials provider (WIRE-FORMATS §3):
// GET /role-aliases/<alias>/credentials over mutual TLS, x-amzn-iot-thingname header.
type credentialsEndpoint struct {
	reg      *registry
	aliases  map[string]bool
	lifetime time.Duration
	store    *credentialStore
	log      *zap.Logger
}

type credentialsBody struct {
	Credentials struct {
		AccessKeyID     string `json:"accessKeyId"`
		SecretAccessKey string `json:"secretAccessKey"`
		SessionToken    string `json:"sessionToken"`
		Expiration      string `json:"expiration"`
	} `json:"credentials"`
}

// credentialsError answers like the credentials provider: a JSON message and an error type
// header (the header values are a best guess; AWS documents the messages).
func credentialsError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-amzn-ErrorType", errType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (e *credentialsEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	alias, ok := strings.CutPrefix(r.URL.Path, "/role-aliases/")
	alias, ok2 := strings.CutSuffix(alias, "/credentials")
	if !ok || !ok2 || alias == "" || strings.Contains(alias, "/") {
		credentialsError(w, http.StatusNotFound, "ResourceNotFoundException", "Not Found")
		return
	}
	if r.Method != http.MethodGet {
		credentialsError(w, http.StatusMethodNotAllowed, "MethodNotAllowedException", "Method Not Allowed")
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		credentialsError(w, http.StatusForbidden, "ForbiddenException", "Access Denied")
		return
	}
	certID := certificateID(r.TLS.PeerCertificates[0].Raw)
	thingName := r.Header.Get("x-amzn-iot-thingname")
	log := e.log.With(zap.String("thing", thingName), zap.String("role_alias", alias), zap.String("certificate_id", certID[:12]))
	rec, known := e.reg.cert(certID)
	if !known || rec.Status != StatusActive || rec.Claim {
		log.Warn("credentials refused: certificate not allowed to assume a role")
		credentialsError(w, http.StatusForbidden, "ForbiddenException", "Access Denied")
		return
	}
	if thingName == "" || !slices.Contains(rec.Things, thingName) {
		log.Warn("credentials refused: thing name does not match the certificate")
		credentialsError(w, http.StatusForbidden, "ForbiddenException", "Invalid thing name passed")
		return
	}
	if !e.aliases[alias] {
		log.Warn("credentials refused: unknown role alias")
		credentialsError(w, http.StatusNotFound, "ResourceNotFoundException", "Role alias does not exist")
		return
	}
	c := e.store.issue(thingName, alias, e.lifetime)
	var body credentialsBody
	body.Credentials.AccessKeyID = c.AccessKeyID
	body.Credentials.SecretAccessKey = c.SecretAccessKey
	body.Credentials.SessionToken = c.SessionToken
	body.Credentials.Expiration = c.Expiration.Format(time.RFC3339)
	log.Info("credentials issued", zap.Time("expiration", c.Expiration))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func randomUpper(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
