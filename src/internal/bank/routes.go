package bank

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/txmesh/txmesh/src/internal/web"
)

// routes lists every route of the Bank API (documented in openapi.yaml, served at /openapi.yaml). With
// ADMIN_ADDR set, web.Serve also serves /healthz, /readyz and /metrics of this handler on the management
// listener (web.AdminHandler).
func (s *Server) routes(e *gin.Engine, health *web.Health) {
	web.HealthRoutes(e, health, s.log)
	e.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", OpenAPI) })
	v1 := e.Group("/v1", s.identify) // only allowed callers; the probes, metrics and this document stay open
	v1.POST("/transactions", s.postTransaction)
	v1.POST("/transactions/batch", s.postBatch)
	v1.GET("/transactions/:id", s.getTransaction)
	v1.GET("/accounts/:id", s.getAccount)
}

// OpenAPI is the Bank API's OpenAPI 3 description; a test proves the server matches it.
//
//go:embed openapi.yaml
var OpenAPI []byte
