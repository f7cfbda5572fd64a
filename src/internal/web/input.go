package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// InputError maps a decoding error to its answer: 413 for a body over its limit (an *http.MaxBytesError,
// whose Limit the message names), 400 with fields for invalid input. ok is false when err is neither. It is
// the one mapping of bad input, for whole requests (BadInput) and for the items of a batch.
func InputError(err error) (status int, body payment.ErrorBody, ok bool) {
	var tooLarge *http.MaxBytesError
	var invalid *payment.ValidationError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, ErrorBody(payment.CodePayloadTooLarge,
			"request body larger than "+strconv.FormatInt(tooLarge.Limit, 10)+" bytes", nil), true
	case errors.As(err, &invalid):
		return http.StatusBadRequest, ErrorBody(payment.CodeInvalidRequest, invalid.Message, invalid.Fields), true
	}
	return 0, payment.ErrorBody{}, false
}
