package stack

import (
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/images"
)

var repo, _ = filepath.Abs("../../..")

func bankImages(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, o := range objs {
		if o.GetKind() == "Deployment" || o.GetKind() == "Job" {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			for _, c := range cs {
				out = append(out, c.(map[string]any)["image"].(string))
			}
		}
	}
	return out
}

// The kind overlay renders with the attached registry's name at the run's tag; the local render keeps the
// name the throwaway cluster's registry serves.
func TestRenderAttached(t *testing.T) {
	s := &Stack{Repo: repo, attach: &AttachOptions{Registry: "localhost:5001", Overlay: "kind"}}
	objs, err := s.render("e2e-rollout", nil)
	if err != nil {
		t.Fatal(err)
	}
	imgs := bankImages(t, objs)
	if len(imgs) < 3 {
		t.Fatalf("images %v: want Bank, Store and the seed Job", imgs)
	}
	for _, i := range imgs {
		if i != "localhost:5001/txmesh:e2e-rollout" {
			t.Errorf("kind overlay runs %s, want localhost:5001/txmesh:e2e-rollout", i)
		}
	}
	local, err := (&Stack{Repo: repo}).render("e2e", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range bankImages(t, local) {
		if i != "txmesh.local/txmesh:e2e" {
			t.Errorf("e2e overlay runs %s, want txmesh.local/txmesh:e2e", i)
		}
	}
}

// A -registry the overlay does not name is refused at render, not left to pods that never pull.
func TestRenderAttachedOtherRegistry(t *testing.T) {
	s := &Stack{Repo: repo, attach: &AttachOptions{Registry: "registry.ci:5000", Overlay: "kind"}}
	_, err := s.render("e2e", nil)
	if err == nil || !strings.Contains(err.Error(), "must name the -registry") {
		t.Fatalf("error %v, want the overlay/registry mismatch", err)
	}
}

func TestPulled(t *testing.T) {
	img := images.Image{Ref: "txmesh.local/txmesh:e2e", Path: "/x.tar"}
	if got := (&Stack{}).pulled(img); got != img {
		t.Fatalf("local: %+v, want it unchanged", got)
	}
	got := (&Stack{attach: &AttachOptions{Registry: "localhost:5001"}}).pulled(img)
	if got.Ref != "localhost:5001/txmesh:e2e" || got.Path != img.Path {
		t.Fatalf("attached: %+v, want localhost:5001/txmesh:e2e", got)
	}
}
