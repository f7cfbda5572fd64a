//go:build txmesh_negative_control

package relay

import (
	"errors"
	"net/http"

	"github.com/txmesh/txmesh/src/internal/bankclient"
)

// The HA lab's negative control builds the Store with -tags txmesh_negative_control: the failure policy
// before issue 19, which dead-lettered any 4xx but 408 and 429 — whoever answered it, and unconfirmed by a
// lookup. The lab must catch what it does under the faults a mesh brings, or it could not catch anything.
const negativeControl = true

func legacyPermanent(err error) bool {
	var e *bankclient.Error
	return errors.As(err, &e) && e.StatusCode >= 400 && e.StatusCode < 500 &&
		e.StatusCode != http.StatusRequestTimeout && e.StatusCode != http.StatusTooManyRequests
}
