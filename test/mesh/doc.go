// Package mesh computes, with Istio's own control plane, the Envoy configuration every txmesh sidecar would
// receive, and judges it. The Minikube and production overlays and mesh/ are rendered in-process (krusty);
// the objects Flagger generates at run time (Services, the primary Deployment, DestinationRules and the
// VirtualService) are produced by Flagger's own router and canary code against fake clients; everything is
// fed into Istio's fake discovery server (istio.io/istio/pilot/test/xds, the one Istio's own tests use), and
// the tests assert on the listeners, routes, clusters and RBAC filters it computes for each workload.
//
// What runs here is the control plane only: no Envoy executes this configuration (none can be built on the
// development machine). The RBAC filters are judged by a small evaluator of Envoy's RBAC semantics (rbac.go),
// tested on its own.
//
// It is its own Go module so that Istio's and Flagger's dependencies never reach the application binaries.
package mesh
