package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The results directory holds the JSON and the table as printed (the workflows upload both).
func TestWriteTableAndJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "e2e-mesh-results")
	res := &Result{Scenarios: []*Row{{Name: "canary-promote", Expect: "clean", Passed: true, Purchases: 7,
		Checks: []string{"promoted"}}}, Timing: map[string]float64{}, Passed: true}
	res.Cluster.Mesh = "Istio 1.31.4"
	if err := write(res, dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "e2e.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || len(back.Scenarios) != 1 || back.Scenarios[0].Name != "canary-promote" {
		t.Fatalf("e2e.json: %v, %+v", err, back)
	}
	table, err := os.ReadFile(filepath.Join(dir, "table.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mesh: Istio 1.31.4", "| canary-promote | PASS |", "- canary-promote: promoted", "PASSED"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("table.md lacks %q:\n%s", want, table)
		}
	}
}
