package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/manifests/docs"
)

// runbooks is the page every alert's runbook_url points into: one section per alert, named after it.
const (
	runbooks    = "docs/operations.md"
	runbookBase = "https://github.com/txmesh/txmesh/blob/main/" + runbooks
)

// alertRules: whoever is paged at 3 a.m. gets a link from the alert to what it means, how to confirm it and
// what to do.
var alertRules = []Rule{{
	Name: "alerts-have-runbooks",
	Why: "every alert carries a severity, a summary and a runbook_url into " + runbooks + " whose section (### <alert>) " +
		"exists: the page says what it means, how to confirm it, what to do",
	Broken: mutate(production, "PrometheusRule", "txmesh", func(m map[string]any) {
		groups, _, _ := unstructured.NestedSlice(m, "spec", "groups")
		rules, _, _ := unstructured.NestedSlice(groups[0].(map[string]any), "rules")
		ann := rules[0].(map[string]any)["annotations"].(map[string]any)
		delete(ann, "runbook_url")
		_ = unstructured.SetNestedSlice(groups[0].(map[string]any), rules, "rules")
		_ = unstructured.SetNestedSlice(m, groups, "spec", "groups")
	}),
	Check: func(s *Set, r *Report) {
		anchors, err := runbookAnchors()
		for _, o := range s.kind("PrometheusRule") {
			if err != nil {
				r.Add(o.ID(), "spec", "reading %s: %v", runbooks, err)
				return
			}
			groups, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "groups")
			for i, g := range groups {
				rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
				for j, rl := range rules {
					m := rl.(map[string]any)
					alert, _ := m["alert"].(string)
					if alert == "" {
						continue // a recording rule
					}
					field := fmt.Sprintf("spec.groups[%d].rules[%d]", i, j)
					sev, _, _ := unstructured.NestedString(m, "labels", "severity")
					summary, _, _ := unstructured.NestedString(m, "annotations", "summary")
					url, _, _ := unstructured.NestedString(m, "annotations", "runbook_url")
					if sev == "" || summary == "" {
						r.Add(o.ID(), field, "alert %s without a severity label or a summary annotation", alert)
					}
					anchor := docs.Slug(alert)
					if want := runbookBase + "#" + anchor; url != want {
						r.Add(o.ID(), field+".annotations.runbook_url", "alert %s: runbook_url %q, want %q", alert, url, want)
					}
					if !anchors[anchor] {
						r.Add(o.ID(), field, "alert %s has no runbook section in %s: add ### %s (what it means, how to confirm, what to do)", alert, runbooks, alert)
					}
				}
			}
		}
	},
}}

var runbookAnchors = sync.OnceValues(func() (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), filepath.FromSlash(runbooks)))
	if err != nil {
		return nil, err
	}
	return docs.Anchors(b), nil
})
