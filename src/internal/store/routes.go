package store

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/txmesh/txmesh/src/internal/web"
)

// routes lists every route of the Store API (documented in openapi.yaml, served at /openapi.yaml). With ADMIN_ADDR set, web.Serve also serves /healthz, /readyz
// and /metrics of this handler on the management listener (web.AdminHandler).
func (s *Server) routes(e *gin.Engine, health *web.Health) {
	web.HealthRoutes(e, health, s.log)
	e.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", OpenAPI) })
	v1 := e.Group("/v1")
	v1.POST("/purchases", s.postPurchase)
	v1.GET("/purchases/:id", s.getPurchase)
	v1.GET("/outbox", s.getOutbox)
}

// OpenAPI is the Store API's OpenAPI 3 description; a test proves the server matches it.
//
//go:embed openapi.yaml
var OpenAPI []byte
