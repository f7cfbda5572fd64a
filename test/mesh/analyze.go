package mesh

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/analysis/local"
	"istio.io/istio/pkg/config/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Analyze runs what `istioctl analyze --all-namespaces --meshConfigFile <istiod's meshConfig> <files>` runs,
// in-process, from the pinned Istio: every analyzer (analyzers.AllCombined), the default resources istioctl
// adds when it reads files only, and the objects as one file source. As with istioctl on files, the analyzers
// that need a live cluster's Pods, Services or Namespaces are skipped (selectors, destination hosts and port
// protocols are judged on the computed configuration by the other tests of this package instead).
func Analyze(tree *Tree, name string, objs []*unstructured.Unstructured) (diag.Messages, error) {
	sa := local.NewIstiodAnalyzer(analyzers.AllCombined(), "", resource.Namespace("istio-system"), nil)
	mc, err := meshConfig(tree)
	if err != nil {
		return nil, err
	}
	mcYAML, err := yaml.Marshal(mc)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "txmesh-analyze-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	mcFile := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(mcFile, mcYAML, 0o600); err != nil {
		return nil, err
	}
	if err := sa.AddFileKubeMeshConfig(mcFile); err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	docs := make([]string, 0, len(objs))
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		docs = append(docs, string(data))
	}
	src := local.ReaderSource{Name: name, Reader: strings.NewReader(strings.Join(docs, "---\n"))}
	// Files first, then the default resources, in the order istioctl's and Istio's analyzer tests use.
	if err := sa.AddReaderKubeSource([]local.ReaderSource{src}); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := sa.AddDefaultResources(); err != nil {
		return nil, err
	}
	cancel := make(chan struct{})
	res, err := sa.Analyze(cancel)
	if err != nil {
		return nil, err
	}
	return res.Messages, nil
}
