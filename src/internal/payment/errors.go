package payment

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
)

// APIError is the error object of a JSON error body.
type APIError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error APIError `json:"error"`
}
