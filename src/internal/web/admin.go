package web

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// The management routes: NewEngine and HealthRoutes serve them on the main listener, AdminHandler passes
// exactly these through on the management listener (ADMIN_ADDR).
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathMetrics = "/metrics"
)

// AdminPaths are the paths the management listener serves.
var AdminPaths = []string{PathHealthz, PathReadyz, PathMetrics}

// AdminHandler is the management listener's handler: requests for AdminPaths go to h, the service's own
// handler, so liveness, readiness (503 while draining or when its check fails) and the metrics are the very
// same handlers, middleware and request metrics as on the main listener; any other path is a JSON 404 and
// never reaches h.
func AdminHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(AdminPaths, r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", payment.ProblemContentType)
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(payment.Problem(http.StatusNotFound, ErrorBody(payment.CodeNotFound,
			"no such route on the management listener (/healthz, /readyz, /metrics)", nil)))
	})
}
