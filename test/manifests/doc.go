// Package manifests validates the repository's Kubernetes delivery offline: every kustomize overlay and every
// Flux path is rendered in-process (krusty), each rendered object is strictly decoded into its upstream Go type,
// every custom resource is validated against the upstream CRD (OpenAPI schema, unknown-field pruning, CEL rules)
// loaded from the pinned upstream Go modules in the module cache, and house rules are checked over the result.
//
// It is its own Go module so that the Kubernetes, Istio, Flux, Flagger and CloudNativePG dependencies never
// reach the application binaries.
package manifests
