package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The table docs/scaling.md shows is this model's output for the documented inputs.
func TestDocShowsTheModel(t *testing.T) {
	doc, err := os.ReadFile("../../docs/scaling.md")
	if err != nil {
		t.Fatal(err)
	}
	want := Markdown(DefaultInputs(), Model(DefaultInputs()))
	got, err := replaceBlock(doc, want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, doc) {
		t.Fatalf("docs/scaling.md's capacity table is not the model's output: run go run ./test/capacity -update docs/scaling.md")
	}
}

// The arithmetic, checked by hand for the defaults: 16 vCPU × 0.6 × 0.5 = 4.8 usable vCPU; store-db
// 0.367 + 0.486 = 0.853 ms → 5,627/s; bank-db 0.486 ms → 9,877/s; 100,000/s ÷ 5,627 → 18 cells.
func TestDefaults(t *testing.T) {
	r := Model(DefaultInputs())
	if r.Cells != 18 {
		t.Fatalf("cells = %d, want 18", r.Cells)
	}
	for _, want := range []string{"5,627 purchases/s", "9,877 purchases/s", "100,000 purchases/s"} {
		if !strings.Contains(Markdown(DefaultInputs(), r), want) {
			t.Errorf("table lacks %q", want)
		}
	}
}

func TestFlagsChangeTheResult(t *testing.T) {
	var out bytes.Buffer
	// Twice the node (and the same efficiency) halves the cells.
	if err := run([]string{"-db-vcpu", "32"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| **cells for the peak** | **9** |") {
		t.Fatalf("32 vCPU nodes: want 9 cells:\n%s", out.String())
	}
	for _, bad := range [][]string{{"-db-utilisation", "1.5"}, {"-zones", "1"}, {"-no-such", "1"}, {"-db-vcpu", "-4"}} {
		if err := run(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

func TestReplaceBlock(t *testing.T) {
	doc := "a\n" + beginMarker + "old\n" + endMarker + "b\n"
	got, err := replaceBlock([]byte(doc), "new\n")
	if err != nil || string(got) != "a\n"+beginMarker+"new\n"+endMarker+"b\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := replaceBlock([]byte("no markers"), "x"); err == nil {
		t.Fatal("want an error without markers")
	}
}
