package mesh

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"istio.io/istio/pkg/config/analysis/diag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// explainedWarnings are the istioctl analyze warnings the manifests knowingly leave, keyed by
// "<code> <analysis> <resource>", each with its reason. A warning not listed fails TestIstioAnalyze, and so
// does an entry that no longer occurs.
var explainedWarnings = map[string]string{}

// analysisInputs are the object sets istioctl analyze judges: mesh/ alone, and every overlay with mesh/
// (what Flux applies: configs, then apps); the overlays that run in the mesh also with the objects Flagger
// generates for them at run time (what istiod finally sees).
func analysisInputs(t *testing.T, tree *Tree) map[string][]*unstructured.Unstructured {
	policy, err := tree.Render("mesh")
	if err != nil {
		t.Fatal(err)
	}
	in := map[string][]*unstructured.Unstructured{"mesh": policy}
	overlays, err := tree.Overlays()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range overlays {
		apps, err := tree.Render(o)
		if err != nil {
			t.Fatal(err)
		}
		name := o[strings.LastIndex(o, "/")+1:]
		all := append(append([]*unstructured.Unstructured{}, apps...), policy...)
		in[name+"+mesh"] = all
		gen, err := Generate(all, FlaggerState{CanaryWeight: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(gen) > 0 {
			in[name+"+mesh+flagger"] = append(append([]*unstructured.Unstructured{}, all...), gen...)
		}
	}
	return in
}

// analyzeFindings runs the analysis on every input and returns the Error and Warning messages keyed as in
// explainedWarnings, with their text.
func analyzeFindings(t *testing.T, tree *Tree) (errs, warnings map[string]string) {
	errs, warnings = map[string]string{}, map[string]string{}
	in := analysisInputs(t, tree)
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		msgs, err := Analyze(tree, name, in[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d objects, %d messages", name, len(in[name]), len(msgs))
		for _, m := range msgs {
			res := ""
			if m.Resource != nil {
				res = m.Resource.Metadata.Schema.Kind() + " " + m.Resource.Metadata.FullName.String()
			}
			key := fmt.Sprintf("%s %s %s", m.Type.Code(), name, res)
			switch m.Type.Level() {
			case diag.Error:
				errs[key] = m.String()
			case diag.Warning:
				warnings[key] = m.String()
			default:
				t.Logf("info: %s", m.String())
			}
		}
	}
	return errs, warnings
}

// TestIstioAnalyze runs istioctl analyze's analyzers (in-process, the pinned Istio) over mesh/ and every
// overlay: no Error, no Warning that explainedWarnings does not explain.
func TestIstioAnalyze(t *testing.T) {
	errs, warnings := analyzeFindings(t, repoTree(t))
	for _, k := range sortedKeys(errs) {
		t.Errorf("error: %s", errs[k])
	}
	for _, k := range sortedKeys(warnings) {
		if why, ok := explainedWarnings[k]; ok {
			t.Logf("explained warning: %s — %s", warnings[k], why)
			continue
		}
		t.Errorf("unexplained warning (%s): %s", k, warnings[k])
	}
	for _, k := range sortedKeys(explainedWarnings) {
		if _, ok := warnings[k]; !ok {
			t.Errorf("explainedWarnings lists %q, which no longer occurs: remove it", k)
		}
	}
}

// TestIstioAnalyzeCatchesIST0109 breaks a copy: the root VirtualService lists its host twice, by short and
// by full name, as it did before; the analysis must report IST0109 on it.
func TestIstioAnalyzeCatchesIST0109(t *testing.T) {
	tr, err := repoTree(t).Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Edit("kustomize/components/canary/bank-root-virtualservice.yaml",
		"  hosts:\n    - bank.txmesh.svc.cluster.local\n",
		"  hosts:\n    - bank\n    - bank.txmesh.svc.cluster.local\n"); err != nil {
		t.Fatal(err)
	}
	errs, _ := analyzeFindings(t, tr)
	for k := range errs {
		if strings.HasPrefix(k, "IST0109 production+mesh VirtualService txmesh/bank-root") {
			return
		}
	}
	t.Errorf("no IST0109 on the production overlay's bank-root; errors: %v", sortedKeys(errs))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
