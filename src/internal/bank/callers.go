package bank

import (
	"errors"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/caller"
)

// Why a request was refused (bank_callers_refused_total{reason}).
const (
	refusedNoIdentity    = "no_identity"    // no verified client certificate, no (valid) XFCC element
	refusedUntrustedPeer = "untrusted_peer" // XFCC mode: the connection does not come from the sidecar
	refusedNotAllowed    = "not_allowed"    // a verified identity that is not on ALLOWED_CALLERS
	refusedNotOwner      = "not_owner"      // an allowed caller, on the id of another caller's transaction
)

// callerKey holds the request's caller identity in the gin context.
const callerKey = "bank.caller"

func newRefused() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "bank", Name: "callers_refused_total",
		Help: "API requests (and batch items) refused 403 caller_not_allowed, by reason: no_identity, " +
			"untrusted_peer, not_allowed, not_owner.",
	}, []string{"reason"})
	for _, r := range []string{refusedNoIdentity, refusedUntrustedPeer, refusedNotAllowed, refusedNotOwner} {
		c.WithLabelValues(r) // export zeroes so that an alert on any increase works from the start
	}
	return c
}

// refusal is a request refused for its caller, answered 403 caller_not_allowed (answer) and counted by
// reason (refuse). The id of another caller's transaction (ErrForeign) is one too (reason not_owner).
type refusal struct {
	reason string
	caller string
	err    error
}

func (r *refusal) Error() string {
	if r.err != nil {
		return r.err.Error()
	}
	return "caller " + r.caller + " is not allowed"
}

func (r *refusal) Unwrap() error { return r.err }

// identify admits a request to the API only from an allowed caller, whose identity it records for the
// handlers (callerOf); any other gets the Bank's 403 caller_not_allowed before anything is read or written.
func (s *Server) identify(c *gin.Context) {
	id, err := s.callers.Identify(c.Request)
	reason := refusedNotAllowed
	switch {
	case errors.Is(err, caller.ErrUntrustedPeer):
		reason = refusedUntrustedPeer
	case err != nil:
		reason = refusedNoIdentity
	case s.callers.Allows(id):
		c.Set(callerKey, id)
		return
	}
	s.fail(c, &refusal{reason: reason, caller: id, err: err})
}

// callerOf is the identity identify admitted.
func callerOf(c *gin.Context) string { return c.GetString(callerKey) }

// refuse counts and logs err when it refuses the caller (a refusal, or ErrForeign for a request or a batch
// item); it does nothing for any other error.
func (s *Server) refuse(c *gin.Context, err error) {
	var r *refusal
	switch {
	case errors.As(err, &r):
	case errors.Is(err, ErrForeign):
		r = &refusal{reason: refusedNotOwner, caller: callerOf(c), err: err}
	default:
		return
	}
	s.refused.WithLabelValues(r.reason).Inc()
	s.log.Warn("caller refused", "reason", r.reason, "caller", r.caller, "err", r.err, "source",
		s.callers.Source(), "peer", c.Request.RemoteAddr, "method", c.Request.Method, "path", c.Request.URL.Path)
}
