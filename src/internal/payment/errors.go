package payment

import (
	"mime"
	"net/http"
)

// Error codes of the JSON error body `{"error":{"code","message","fields"}}` that both services return.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeIdempotencyConflict  = "idempotency_conflict"
	CodePayloadTooLarge      = "payload_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeUnavailable          = "unavailable"
	CodeOverloaded           = "overloaded" // 503: HTTP_MAX_IN_FLIGHT requests in flight, this one was not handled
	CodeInternal             = "internal"
	CodeRequestTimeout       = "request_timeout" // 408: the body did not arrive within HTTP_READ_BODY_TIMEOUT
	CodeOutcomeUnknown       = "outcome_unknown" // 504: the Store cannot yet say whether the purchase is committed
	// CodeCallerNotAllowed (403): the Bank could not verify the caller's identity, or it is not on ALLOWED_CALLERS.
	// Nothing was read or changed. A configuration fault, not the transaction's: the Store retries it.
	CodeCallerNotAllowed = "caller_not_allowed"
)

// The marks of an answer a service gave itself. Something between a client and a service (an Envoy
// sidecar's "RBAC: access denied", a 404 for a missing route, a load balancer's 503) answers without them,
// so a client can tell the service's own word from anything else: the Store's relay ends a purchase only on
// a marked rejection by the Bank.
//   - ServiceHeader names the service on every response it writes (ServiceBank, ServiceStore);
//   - error answers are problem documents (RFC 9457): Content-Type ProblemContentType, with the members
//     type, title and status, and the error object as an extension member.
const (
	ServiceHeader      = "Txmesh-Service"
	ServiceBank        = "bank"
	ServiceStore       = "store"
	ProblemContentType = "application/problem+json"
	// ProblemTypePrefix + the error code is a problem document's type.
	ProblemTypePrefix = "urn:txmesh:error:"
)

// APIError is the error object of a JSON error body.
type APIError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// ErrorBody is the JSON body of every error response: an RFC 9457 problem document (Problem fills its
// members) whose extension member "error" holds the code, the message and the fields at fault.
type ErrorBody struct {
	Type   string   `json:"type,omitempty"`
	Title  string   `json:"title,omitempty"`
	Status int      `json:"status,omitempty"`
	Error  APIError `json:"error"`
}

// Problem returns b as the problem document of an answer with status: type from the error code, title
// from the status.
func Problem(status int, b ErrorBody) ErrorBody {
	b.Type, b.Title, b.Status = ProblemTypePrefix+b.Error.Code, http.StatusText(status), status
	return b
}

// IsProblem reports whether a Content-Type header value is ProblemContentType (parameters ignored).
func IsProblem(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == ProblemContentType
}
