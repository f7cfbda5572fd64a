// Package manifests validates the repository's Kubernetes delivery offline: every kustomize overlay and every
// Flux path is rendered in-process (krusty), each rendered object is strictly decoded into its upstream Go type,
// every custom resource is validated against the upstream CRD (OpenAPI schema, unknown-field pruning, CEL rules)
// loaded from the pinned upstream Go modules in the module cache, and house rules are checked over the result.
//
// A house rule (rules_*.go) has a name, a one-line why, its own broken fixture and a check. AppRules run over
// every overlay, every Flux cluster's union and each add-on beside its overlays (AddOns), ClusterRules over
// the unions only. A finding names the rule, the object and the field:
//
//	[probe-reaches-listener] Deployment txmesh/store spec.template.spec.containers[store].livenessProbe.httpGet: targets port 9091, …
//
// The fixture is a minimal mutation of a real render that the rule must catch: TestRuleFixtures fails unless
// the mutated objects still decode and validate, and this rule — no other — reports them. To add a rule, add
// it to the list of its file with its fixture; more ways to break it go in moreRuleCases (broken_test.go).
// `go test -run TestRuleFixtures -v` lists every rule with what its fixture made it report.
//
// It is its own Go module so that the Kubernetes, Istio, Flux, Flagger and CloudNativePG dependencies never
// reach the application binaries.
package manifests
