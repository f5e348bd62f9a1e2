package localcloud

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Fleet provisioning topics (WIRE-FORMATS §2); {fmt} is json or cbor.
const (
	topicCreateFromCSR = "$aws/certificates/create-from-csr/"
	topicCreateKeys    = "$aws/certificates/create/"
	topicTemplates     = "$aws/provisioning-templates/"
)

// FleetRequestFilters are the topic filters the responder serves.
var FleetRequestFilters = []string{
	topicCreateFromCSR + "json", topicCreateFromCSR + "cbor",
	topicCreateKeys + "json", topicCreateKeys + "cbor",
	topicTemplates + "+/provision/json", topicTemplates + "+/provision/cbor",
}

// HookInput is what a pre-provisioning hook receives.
type HookInput struct {
	ClaimCertificateID string            `json:"claimCertificateId"`
	CertificateID      string            `json:"certificateId"`
	CertificatePEM     string            `json:"certificatePem"`
	TemplateARN        string            `json:"templateArn"`
	ClientID           string            `json:"clientId"`
	Parameters         map[string]string `json:"parameters"`
}

// HookOutput is a pre-provisioning hook's answer.
type HookOutput struct {
	AllowProvisioning  bool              `json:"allowProvisioning"`
	ParameterOverrides map[string]string `json:"parameterOverrides,omitempty"`
}

// PreProvisioningHook decides whether RegisterThing may go ahead.
type PreProvisioningHook func(HookInput) HookOutput

// AllowListHook allows provisioning when the SerialNumber parameter is in serials: what
// a manufacturer's hook typically checks.
func AllowListHook(serials func() map[string]bool) PreProvisioningHook {
	return func(in HookInput) HookOutput {
		return HookOutput{AllowProvisioning: serials()[in.Parameters["SerialNumber"]]}
	}
}

// FleetOptions configure the fleet provisioning responder.
type FleetOptions struct {
	Template string
	Region   string
	Account  string
	// TokenTTL is how long a certificate ownership token stays valid (AWS: 1 hour).
	TokenTTL time.Duration
	Hook     PreProvisioningHook
	// DeviceConfiguration is returned by RegisterThing; {{thing}} is replaced by the thing name.
	DeviceConfiguration map[string]string
}

// fleetResponder implements the fleet provisioning MQTT API independently of the broker.
type fleetResponder struct {
	opts FleetOptions
	ca   *authority
	reg  *registry
	now  func() time.Time

	mu     sync.Mutex
	tokens map[string]ownership
}

type ownership struct {
	certID  string
	expires time.Time
}

func newFleetResponder(opts FleetOptions, ca *authority, reg *registry) *fleetResponder {
	if opts.TokenTTL == 0 {
		opts.TokenTTL = time.Hour
	}
	return &fleetResponder{opts: opts, ca: ca, reg: reg, now: time.Now, tokens: map[string]ownership{}}
}

// fleetRequest is one request message and who sent it.
type fleetRequest struct {
	Topic       string
	Payload     []byte
	ClientID    string
	ClaimCertID string
}

// rejection is AWS's rejected payload; statusCode is a number.
type rejection struct {
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

func reject(status int, code, msg string) *rejection {
	return &rejection{StatusCode: status, ErrorCode: code, ErrorMessage: msg}
}

type createFromCSRRequest struct {
	CSR string `json:"certificateSigningRequest"`
}

type createResponse struct {
	CertificateID             string `json:"certificateId"`
	CertificatePEM            string `json:"certificatePem"`
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
	PrivateKey                string `json:"privateKey,omitempty"`
}

type registerRequest struct {
	CertificateOwnershipToken string            `json:"certificateOwnershipToken"`
	Parameters                map[string]string `json:"parameters"`
}

type registerResponse struct {
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
	ThingName           string            `json:"thingName"`
}

var thingNameRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// handle answers a request: the reply topic and payload, or ok=false when the topic is not
// a fleet provisioning request.
func (f *fleetResponder) handle(req fleetRequest) (replyTopic string, payload []byte, ok bool) {
	format := req.Topic[strings.LastIndexByte(req.Topic, '/')+1:]
	if format != "json" && format != "cbor" {
		return "", nil, false
	}
	var answer any
	var rej *rejection
	switch {
	case req.Topic == topicCreateFromCSR+format:
		answer, rej = f.createFromCSR(req, format)
	case req.Topic == topicCreateKeys+format:
		answer, rej = f.createKeys()
	case strings.HasPrefix(req.Topic, topicTemplates) && strings.HasSuffix(req.Topic, "/provision/"+format):
		name := strings.TrimSuffix(strings.TrimPrefix(req.Topic, topicTemplates), "/provision/"+format)
		if strings.Contains(name, "/") {
			return "", nil, false
		}
		answer, rej = f.register(req, name, format)
	default:
		return "", nil, false
	}
	if rej != nil {
		return req.Topic + "/rejected", encode(format, rej), true
	}
	return req.Topic + "/accepted", encode(format, answer), true
}

func encode(format string, v any) []byte {
	var b []byte
	if format == "cbor" {
		b, _ = cbor.Marshal(v)
	} else {
		b, _ = json.Marshal(v)
	}
	return b
}

func decode(format string, data []byte, v any) error {
	if format == "cbor" {
		return cbor.Unmarshal(data, v)
	}
	return json.Unmarshal(data, v)
}

func (f *fleetResponder) createFromCSR(req fleetRequest, format string) (any, *rejection) {
	var in createFromCSRRequest
	if err := decode(format, req.Payload, &in); err != nil {
		return nil, reject(400, "InvalidPayload", "Request payload is not valid "+strings.ToUpper(format)+".")
	}
	if in.CSR == "" {
		return nil, reject(400, "InvalidCSR", "Certificate signing request cannot be empty.")
	}
	certPEM, err := f.ca.signCSR(in.CSR)
	if err != nil {
		return nil, reject(400, "InvalidCSR", "Invalid certificate signing request: "+err.Error())
	}
	return f.newCertificate(certPEM, "")
}

func (f *fleetResponder) createKeys() (any, *rejection) {
	certPEM, keyPEM, err := f.ca.clientCert("AWS IoT Certificate", true)
	if err != nil {
		return nil, reject(500, "InternalFailure", "Failed to create keys and certificate.")
	}
	return f.newCertificate(certPEM, string(keyPEM))
}

// newCertificate registers a PENDING_ACTIVATION certificate and hands out its ownership token.
func (f *fleetResponder) newCertificate(certPEM []byte, keyPEM string) (any, *rejection) {
	id, err := certificateIDFromPEM(certPEM)
	if err == nil {
		err = f.reg.addCert(CertRecord{ID: id, PEM: string(certPEM), Status: StatusPendingActivation})
	}
	if err != nil {
		return nil, reject(500, "InternalFailure", "Failed to register the certificate.")
	}
	raw := make([]byte, 192)
	_, _ = rand.Read(raw)
	token := base64.StdEncoding.EncodeToString(raw)
	f.mu.Lock()
	now := f.now()
	for t, own := range f.tokens { // tokens never redeemed
		if now.After(own.expires) {
			delete(f.tokens, t)
		}
	}
	f.tokens[token] = ownership{certID: id, expires: now.Add(f.opts.TokenTTL)}
	f.mu.Unlock()
	return createResponse{CertificateID: id, CertificatePEM: string(certPEM), CertificateOwnershipToken: token, PrivateKey: keyPEM}, nil
}

func (f *fleetResponder) register(req fleetRequest, template, format string) (any, *rejection) {
	if template != f.opts.Template {
		return nil, reject(404, "ResourceNotFound", fmt.Sprintf("Template %s does not exist.", template))
	}
	var in registerRequest
	if err := decode(format, req.Payload, &in); err != nil {
		return nil, reject(400, "InvalidPayload", "Request payload is not valid "+strings.ToUpper(format)+".")
	}
	if in.CertificateOwnershipToken == "" {
		return nil, reject(400, "InvalidCertificateOwnershipToken", "Certificate ownership token cannot be empty.")
	}
	// A token provisions once: take it now, so that a concurrent request with the same token
	// is refused, and give it back if this request is rejected.
	f.mu.Lock()
	own, ok := f.tokens[in.CertificateOwnershipToken]
	delete(f.tokens, in.CertificateOwnershipToken)
	f.mu.Unlock()
	if !ok || f.now().After(own.expires) {
		return nil, reject(400, "InvalidCertificateOwnershipToken", "Certificate ownership token is invalid or has expired.")
	}
	redeemed := false
	defer func() {
		if !redeemed {
			f.mu.Lock()
			f.tokens[in.CertificateOwnershipToken] = own
			f.mu.Unlock()
		}
	}()
	serial := in.Parameters["SerialNumber"]
	if serial == "" {
		return nil, reject(400, "InvalidParameters", "Parameter SerialNumber is required by template "+template+".")
	}
	cert, _ := f.reg.cert(own.certID)
	params := in.Parameters
	if f.opts.Hook != nil {
		out := f.opts.Hook(HookInput{
			ClaimCertificateID: req.ClaimCertID,
			CertificateID:      own.certID,
			CertificatePEM:     cert.PEM,
			TemplateARN:        fmt.Sprintf("arn:aws:iot:%s:%s:provisioningtemplate/%s", f.opts.Region, f.opts.Account, template),
			ClientID:           req.ClientID,
			Parameters:         in.Parameters,
		})
		if !out.AllowProvisioning {
			return nil, reject(403, "AccessDenied", "Failed provisioning due to the pre provisioning hook rejecting the request.")
		}
		params = make(map[string]string, len(in.Parameters)+len(out.ParameterOverrides))
		maps.Copy(params, in.Parameters)
		maps.Copy(params, out.ParameterOverrides)
	}
	// The template names the thing after its serial number, like AWS's surveillance sample.
	thing := params["SerialNumber"]
	if !thingNameRE.MatchString(thing) {
		return nil, reject(400, "InvalidParameters", fmt.Sprintf("Thing name %q must be 1 to 128 of [a-zA-Z0-9:_-].", thing))
	}
	if err := f.reg.registerThing(thing, own.certID, params); err != nil {
		return nil, reject(500, "InternalFailure", "Failed to register the thing.")
	}
	redeemed = true
	cfg := map[string]string{}
	for k, v := range f.opts.DeviceConfiguration {
		cfg[k] = strings.ReplaceAll(v, "{{thing}}", thing)
	}
	return registerResponse{DeviceConfiguration: cfg, ThingName: thing}, nil
}
