package signaling

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/aws/smithy-go"
	"go.uber.org/zap"
)

// Invalidator is implemented by a credentials provider that can drop the credentials it
// keeps (provisioning.CredentialsCache, aws.CredentialsCache): the Client calls Invalidate
// when the service refuses them, so that new ones are fetched at once rather than at the
// end of their period (an issuer that restarted and forgot them, a revoked session).
type Invalidator interface {
	Invalidate()
}

// refusedCodes are the error types with which AWS refuses the credentials themselves (an
// unknown access key, a bad or expired session token, a signature made with a wrong
// secret). InvalidSignatureException is also what a wrong clock gets; the clock correction
// comes first, and fetching credentials once more costs little.
var refusedCodes = map[string]bool{
	"UnrecognizedClientException":         true,
	"InvalidSignatureException":           true,
	"SignatureDoesNotMatch":               true,
	"ExpiredTokenException":               true,
	"ExpiredToken":                        true,
	"InvalidClientTokenId":                true,
	"InvalidTokenException":               true,
	"TokenRefreshRequired":                true,
	"IncompleteSignatureException":        true,
	"AuthFailure":                         true,
	"NotAuthorizedException":              false, // a policy: new credentials of the same role do not help
	"MissingAuthenticationToken":          true,
	"MissingAuthenticationTokenException": true,
}

// minInvalidateGap keeps a service that refuses every credential (a wrong role, a clock far
// off) from making the Client fetch new ones on every attempt.
const minInvalidateGap = 10 * time.Second

// refusals drops refused credentials, at most once per minInvalidateGap.
type refusals struct {
	mu   sync.Mutex
	last time.Time
}

// refusedCredentials reports whether err (from the SDK, or an *APIError) refuses the
// credentials, and the error type that says so.
func refusedCredentials(err error) (string, bool) {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorType, apiErr.Status == http.StatusForbidden && refusedCodes[apiErr.ErrorType]
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode(), refusedCodes[api.ErrorCode()]
	}
	return "", false
}

// checkRefusal drops the cached credentials when err refuses them. It reports whether it
// did, so that the caller may try once more with new credentials.
func (c *Client) checkRefusal(err error) bool {
	code, refused := refusedCredentials(err)
	if !refused {
		return false
	}
	inv, ok := c.opts.Credentials.(Invalidator)
	if !ok {
		return false
	}
	c.refusals.mu.Lock()
	now := time.Now()
	if !c.refusals.last.IsZero() && now.Sub(c.refusals.last) < minInvalidateGap {
		c.refusals.mu.Unlock()
		return false
	}
	c.refusals.last = now
	c.refusals.mu.Unlock()
	c.log.Warn("the signaling service refused the AWS credentials; fetching new ones", zap.String("error_type", code), zap.Error(err))
	inv.Invalidate()
	return true
}
