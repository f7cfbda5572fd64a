package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCanaryOnCustomers: a txaudit report whose canary checks spent a customer's account fails the row; one
// without (or from a txaudit that predates the split) does not.
func TestCanaryOnCustomers(t *testing.T) {
	for _, tc := range []struct{ report, want string }{
		{`{"bank":{"transactions":5}}`, ""},
		{`{"bank":{"canary":{"transactions":4,"on_customer_accounts":{"transactions":0}}}}`, ""},
		{`{"bank":{"canary":{"on_customer_accounts":{"transactions":2,"approved":1,"approved_amounts":{"EUR":1}}}}}`,
			"canary checks spent customer accounts: 2 transactions, 1 approved (map[EUR:1]"},
	} {
		var r auditReport
		if err := json.Unmarshal([]byte(tc.report), &r); err != nil {
			t.Fatal(err)
		}
		if got := r.canaryOnCustomers(); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.report, got, tc.want)
		}
	}
}
