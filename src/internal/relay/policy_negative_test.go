//go:build txmesh_negative_control

package relay

import (
	"context"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/store"
)

// TestNegativeControlDeadLettersForeignAnswers: the lab's negative control really is the old policy — an
// Envoy 403 the Bank never gave dead-letters the purchase at once, without a lookup. (make test runs it
// with -tags txmesh_negative_control.)
func TestNegativeControlDeadLettersForeignAnswers(t *testing.T) {
	repo, _, _ := newOutbox(t, "")
	p := createPurchase(t, repo, "ACC-000001", 1)
	bank := NewMockBank(gomock.NewController(t))
	bank.EXPECT().Submit(gomock.Any(), p.Transaction()).Return(payment.Result{}, foreign(403, "RBAC: access denied"))
	r := startRelay(t, repo, bank, "relay-1", fastConfig())
	waitFor(t, 10*time.Second, "the dead letter", func() bool {
		got, err := repo.Get(context.Background(), p.ID)
		return err == nil && got.Status == store.StatusRejected
	})
	r.stop()
}
