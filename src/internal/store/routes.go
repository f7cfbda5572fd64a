package store

import (
	"github.com/gin-gonic/gin"

	"github.com/txmesh/txmesh/src/internal/web"
)

// routes lists every route of the Store API. With ADMIN_ADDR set, web.Serve also serves /healthz, /readyz
// and /metrics of this handler on the management listener (web.AdminHandler).
func (s *Server) routes(e *gin.Engine, health *web.Health) {
	web.HealthRoutes(e, health, s.log)
	v1 := e.Group("/v1")
	v1.POST("/purchases", s.postPurchase)
	v1.GET("/purchases/:id", s.getPurchase)
	v1.GET("/outbox", s.getOutbox)
}
