package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/registry"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

// AttachOptions configure Attach.
type AttachOptions struct {
	RepoRoot   string
	Kubeconfig string // the running cluster's admin kubeconfig
	// Registry is host:port of a plain-HTTP registry the e2e pushes the txmesh images to; the nodes pull them
	// as <Registry>/txmesh:<tag>, the name the overlay gives the image.
	Registry string
	Overlay  string // kustomize/overlays/<Overlay>
	Dir      string // where the apps' CA and keys are kept across runs; <cache>/attach unless set
	Tag      string // the txmesh image tag deployed; "e2e" unless set
	// Mesh: the cluster runs Istio and the overlay puts txmesh in it (kustomize/overlays/kind-mesh): the
	// namespace must have sidecar injection before anything is deployed, the apps do no TLS of their own, and
	// Flagger owns them from the start (its -primary Deployments serve).
	Mesh bool
	Log  io.Writer
}

// ImageName is the txmesh image's name in the attached cluster's registry.
func (o AttachOptions) ImageName() string { return o.Registry + "/txmesh" }

// Attach deploys txmesh to a cluster someone else started (kind on a CI runner, CloudNativePG's operator
// already installed) instead of the throwaway one: it deploys the registry's txmesh image at the tag when
// there is one (the workflow's Dockerfile build), else builds and pushes it as make e2e does; applies the
// overlay and waits until txmesh is healthy. The Stack's Cluster is nil; kubectl and
// kubectl-cnpg come from the PATH.
func Attach(ctx context.Context, o AttachOptions) (*Stack, error) {
	if o.Tag == "" {
		o.Tag = "e2e"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Kubeconfig == "" || o.Registry == "" || o.Overlay == "" {
		return nil, errors.New("attach: the kubeconfig, registry and overlay are all required")
	}
	cache, err := gobuild.CacheDir()
	if err != nil {
		return nil, err
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(cache, "attach")
	}
	s := &Stack{Repo: o.RepoRoot, Timing: map[string]time.Duration{}, log: o.Log, cache: cache, attach: &o,
		Bin: gobuild.Binaries{}, Images: map[string]images.Image{},
		builder: &images.Builder{Dir: filepath.Join(cache, "images"), Log: o.Log}}
	for _, b := range []string{"kubectl", "kubectl-cnpg"} {
		if s.Bin[b], err = exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("attach: %s is not on the PATH: %w", b, err)
		}
	}
	cfg, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	if s.Apply, err = manifests.NewApplier(cfg, o.Log); err != nil {
		return nil, err
	}
	t := time.Now()
	ref := o.ImageName() + ":" + o.Tag
	if r, err := name.ParseReference(ref, name.Insecure); err == nil && headOK(ctx, r) {
		// The workflow pushed the Dockerfile's build under this tag: that one is deployed, as production's is.
		fmt.Fprintf(o.Log, "deploy: %s is in the registry already, deploying it\n", ref)
		s.Images["txmesh"] = images.Image{Ref: ref}
	} else {
		img, err := txmesh.Image(ctx, s.builder, s.Repo, o.Tag)
		if err != nil {
			return nil, err
		}
		if err := s.push(ctx, img); err != nil {
			return nil, err
		}
		s.Images["txmesh"] = s.pulled(img)
	}
	s.Timing["images"] = time.Since(t)
	t = time.Now()
	if err := s.deployTxmesh(ctx, o.Tag); err != nil {
		return nil, err
	}
	s.Timing["txmesh"] = time.Since(t)
	return s, nil
}

func headOK(ctx context.Context, r name.Reference) bool {
	_, err := remote.Head(r, remote.WithContext(ctx))
	return err == nil
}

func (o AttachOptions) restConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Kubeconfig is the cluster's admin kubeconfig.
func (s *Stack) Kubeconfig() string {
	if s.attach != nil {
		return s.attach.Kubeconfig
	}
	return s.Cluster.Kubeconfig()
}

// Attached reports whether the stack runs on a cluster Attach was given (Cluster is nil then).
func (s *Stack) Attached() bool { return s.attach != nil }

// Meshed reports whether txmesh runs inside Istio's mesh (AttachOptions.Mesh).
func (s *Stack) Meshed() bool { return s.attach != nil && s.attach.Mesh }

// dir is where the stack keeps its files: the cluster's directory, or the attached run's.
func (s *Stack) dir() string {
	if s.attach != nil {
		return s.attach.Dir
	}
	return s.Cluster.Layout().Dir
}

// render renders the stack's overlay with the txmesh image at tag, plus optional patches.
func (s *Stack) render(tag string, patches map[string]string) ([]*unstructured.Unstructured, error) {
	if s.attach == nil {
		overlay := txmesh.Overlay
		if s.handedToFlux {
			overlay = txmesh.FluxOverlay
		}
		return txmesh.Render(s.Repo, overlay, txmesh.LocalImage, tag, patches)
	}
	objs, err := txmesh.Render(s.Repo, s.attach.Overlay, s.attach.ImageName(), tag, patches)
	if err != nil {
		return nil, err
	}
	return objs, checkImage(objs, s.attach.ImageName()+":"+tag, s.attach.Overlay)
}

// checkImage makes sure the rendered Bank runs want: an overlay naming another registry than the one the
// images are pushed to would otherwise only show as pods that never pull.
func checkImage(objs []*unstructured.Unstructured, want, overlay string) error {
	for _, o := range objs {
		if o.GetKind() != "Deployment" || o.GetName() != "bank" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if len(cs) > 0 {
			if c, ok := cs[0].(map[string]any); ok && c["image"] == want {
				return nil
			}
			return fmt.Errorf("kustomize/overlays/%s runs the Bank as %v, not %s: the overlay's images: entry "+
				"must name the -registry the e2e pushes to", overlay, cs[0].(map[string]any)["image"], want)
		}
	}
	return fmt.Errorf("kustomize/overlays/%s renders no Deployment bank", overlay)
}

// pushAttached uploads a txmesh image to the attached cluster's registry.
func (s *Stack) pushAttached(ctx context.Context, img images.Image) error {
	v, err := tarball.ImageFromPath(img.Path, nil)
	if err != nil {
		return fmt.Errorf("push %s: %w", img.Ref, err)
	}
	d, err := registry.Push(ctx, s.attach.Registry, v, img.Ref)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.log, "deploy: pushed %s (%s) to the registry at %s\n", s.pulled(img).Ref, d, s.attach.Registry)
	return nil
}

// pulled is img as the nodes pull it: the attached cluster's registry name instead of the local one.
func (s *Stack) pulled(img images.Image) images.Image {
	if s.attach != nil {
		img.Ref = s.attach.Registry + "/" + strings.TrimPrefix(img.Ref, registry.LocalName+"/")
	}
	return img
}

// Clientset is an admin clientset of the cluster.
func (s *Stack) Clientset() (kubernetes.Interface, error) {
	if s.attach == nil {
		return s.Cluster.Client()
	}
	cfg, err := s.attach.restConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}
