package web

import (
	"encoding/json"

	"github.com/gin-gonic/gin"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// markService is the engine's first middleware: every response names the service (payment.ServiceHeader),
// so clients can tell its answers from those of anything in between.
func markService(service string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header(payment.ServiceHeader, service)
		c.Next()
	}
}

// WriteError answers with body as a problem document (payment.Problem, application/problem+json) and
// aborts the handler chain. It is the one way error answers are written.
func WriteError(c *gin.Context, status int, body payment.ErrorBody) {
	data, err := json.Marshal(payment.Problem(status, body))
	if err != nil { // not reached: the body is strings and a map of strings
		data = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	c.Data(status, payment.ProblemContentType, data)
	c.Abort()
}
