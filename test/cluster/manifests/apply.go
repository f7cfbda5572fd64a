// Package manifests renders kustomizations in-process and applies them to a cluster with server-side apply, as
// a GitOps controller would, then waits for what they create to become ready.
package manifests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	ktypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// FieldManager owns every field the harness applies.
const FieldManager = "txmesh-e2e"

// Applier applies objects with server-side apply.
type Applier struct {
	dyn    dynamic.Interface
	disco  discovery.CachedDiscoveryInterface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	log    io.Writer
}

// NewApplier builds an Applier for a cluster.
func NewApplier(cfg *rest.Config, log io.Writer) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cached := memory.NewMemCacheClient(dc)
	return &Applier{dyn: dyn, disco: cached, mapper: restmapper.NewDeferredDiscoveryRESTMapper(cached), log: log}, nil
}

// Render builds a kustomization directory on disk (krusty, as `kubectl kustomize` does; files outside the
// directory allowed, so a temporary kustomization can point at a module's own config).
func Render(dir string) ([]*unstructured.Unstructured, error) {
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = ktypes.LoadRestrictionsNone
	res, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	y, err := res.AsYaml()
	if err != nil {
		return nil, err
	}
	return Decode(y)
}

// Decode splits a multi-document YAML stream into objects.
func Decode(y []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(y), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// Apply applies objects in order: namespaces and CRDs first (and waits for CRDs to be served), then the rest.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	var first, rest []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "CustomResourceDefinition":
			first = append(first, o)
		default:
			rest = append(rest, o)
		}
	}
	for _, o := range first {
		if err := a.apply(ctx, o); err != nil {
			return err
		}
	}
	if len(first) > 0 {
		a.mapper.Reset()
	}
	for _, o := range rest {
		if err := a.applyRetry(ctx, o, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// applyRetry retries while a freshly registered kind is not served yet or a webhook is not answering yet.
func (a *Applier) applyRetry(ctx context.Context, o *unstructured.Unstructured, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := a.apply(ctx, o)
		if err == nil {
			return nil
		}
		retry := meta.IsNoMatchError(err) || apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
			strings.Contains(err.Error(), "failed calling webhook") || strings.Contains(err.Error(), "connection refused")
		if !retry || time.Now().After(deadline) {
			return err
		}
		if meta.IsNoMatchError(err) {
			a.mapper.Reset()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (a *Applier) resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		return a.dyn.Resource(m.Resource).Namespace(ns), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

func (a *Applier) apply(ctx context.Context, o *unstructured.Unstructured) error {
	r, err := a.resource(o)
	if err != nil {
		return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
	}
	body, err := o.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	_, err = r.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
	if apierrors.IsInvalid(err) && o.GetAnnotations()[forceAnnotation] == "enabled" {
		// As Flux does for an object marked so (a Job whose template changed): delete it, then create it.
		if err := a.Delete(ctx, o); err != nil {
			return err
		}
		if err := a.waitGone(ctx, r, o.GetName(), time.Minute); err != nil {
			return err
		}
		_, err = r.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
	}
	if err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// forceAnnotation marks objects Flux re-creates when an immutable field changes.
const forceAnnotation = "kustomize.toolkit.fluxcd.io/force"

func (a *Applier) waitGone(ctx context.Context, r dynamic.ResourceInterface, name string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := r.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still there %s after its deletion", name, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Delete removes objects (absent ones are fine), e.g. a Job before it is re-created.
func (a *Applier) Delete(ctx context.Context, o *unstructured.Unstructured) error {
	r, err := a.resource(o)
	if err != nil {
		return err
	}
	fg := metav1.DeletePropagationForeground
	err = r.Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &fg})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Get reads an object back.
func (a *Applier) Get(ctx context.Context, o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	r, err := a.resource(o)
	if err != nil {
		return nil, err
	}
	return r.Get(ctx, o.GetName(), metav1.GetOptions{})
}

// Dynamic is the underlying dynamic client.
func (a *Applier) Dynamic() dynamic.Interface { return a.dyn }
