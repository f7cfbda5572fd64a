package manifests

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Ready tells whether an object is ready, and if not, why (for the timeout message).
type Ready func(o *unstructured.Unstructured) (bool, string)

// Wait polls an object until ready says so.
func (a *Applier) Wait(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, d time.Duration, ready Ready) error {
	deadline := time.Now().Add(d)
	var why string
	for {
		o, err := a.dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			var ok bool
			if ok, why = ready(o); ok {
				return nil
			}
		} else {
			why = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s/%s not ready after %s: %s", gvr.Resource, ns, name, d, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Resources the harness waits on.
var (
	Deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	Jobs        = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	Pods        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	DaemonSets  = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}
)

// i64 is an integer field of o (0 when absent).
func i64(o *unstructured.Unstructured, path ...string) int64 {
	v, _, _ := unstructured.NestedInt64(o.Object, path...)
	return v
}

// DeploymentAvailable: the current generation rolled out, every replica updated and available.
func DeploymentAvailable(o *unstructured.Unstructured) (bool, string) {
	want := i64(o, "spec", "replicas")
	upd, avail := i64(o, "status", "updatedReplicas"), i64(o, "status", "availableReplicas")
	total := i64(o, "status", "replicas")
	ok := i64(o, "status", "observedGeneration") >= o.GetGeneration() && upd == want && avail == want && total == want
	return ok, fmt.Sprintf("%d/%d updated, %d available, %d in all", upd, want, avail, total)
}

// MinReplicas wraps a readiness check with a floor on spec.replicas (an HPA raises it to its minimum).
func MinReplicas(n int64, ready Ready) Ready {
	return func(o *unstructured.Unstructured) (bool, string) {
		if r := i64(o, "spec", "replicas"); r < n {
			return false, fmt.Sprintf("%d replicas wanted, waiting for %d", r, n)
		}
		return ready(o)
	}
}

// JobSucceeded: at least one pod of the Job completed.
func JobSucceeded(o *unstructured.Unstructured) (bool, string) {
	return i64(o, "status", "succeeded") >= 1, fmt.Sprintf("%d succeeded, %d failed", i64(o, "status", "succeeded"),
		i64(o, "status", "failed"))
}

// DaemonSetReady: the current generation rolled out on every node it is scheduled to, every pod ready.
func DaemonSetReady(o *unstructured.Unstructured) (bool, string) {
	want := i64(o, "status", "desiredNumberScheduled")
	upd, ready := i64(o, "status", "updatedNumberScheduled"), i64(o, "status", "numberReady")
	ok := i64(o, "status", "observedGeneration") >= o.GetGeneration() && want > 0 && upd == want && ready == want
	return ok, fmt.Sprintf("%d/%d updated, %d ready", upd, want, ready)
}
