package manifests

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// fluxRules: the Flux tree of a cluster applies everything, in order, from pinned sources.
var fluxRules = []Rule{{
	Name: "flux-system-namespace-is-bootstraps",
	Why: "`flux bootstrap` commits the flux-system Namespace in flux-system/gotk-components.yaml of the cluster directory; " +
		"a second declaration in the tree makes kustomize refuse the whole directory, and Flux then applies nothing",
	// The tree before 2026-12-06 (flux/clusters/e2e/namespace.yaml), which the first real bootstrap refused.
	Broken: add(e2e, `apiVersion: v1
kind: Namespace
metadata:
  name: flux-system
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: v1.32
    pod-security.kubernetes.io/audit: restricted
    pod-security.kubernetes.io/audit-version: v1.32
    pod-security.kubernetes.io/warn: restricted
    pod-security.kubernetes.io/warn-version: v1.32
`),
	Check: func(s *Set, r *Report) {
		if o := s.find("Namespace", "", bootstrapNamespace); o != nil {
			r.Add(o.ID(), "", "declared in the tree: flux bootstrap's gotk-components.yaml declares it; set its labels there (the harness's flux package, or a patch in flux-system/kustomization.yaml)")
		}
	},
}, {
	Name:   "flux-prune",
	Why:    "what is removed from Git must be removed from the cluster",
	Broken: mutate(minikube, "Kustomization", "infra-configs", set("spec.prune", false)),
	Check: func(s *Set, r *Report) {
		eachKustomization(s, func(name string, o Object, m map[string]any) {
			if v, _, _ := unstructured.NestedBool(m, "spec", "prune"); !v {
				r.Add(o.ID(), "spec.prune", "must be true")
			}
		})
	},
}, {
	Name:   "flux-wait",
	Why:    "dependsOn orders the layers only if each waits for its objects to be healthy",
	Broken: mutate(minikube, "Kustomization", "apps", set("spec.wait", false)),
	Check: func(s *Set, r *Report) {
		eachKustomization(s, func(name string, o Object, m map[string]any) {
			if v, _, _ := unstructured.NestedBool(m, "spec", "wait"); !v {
				r.Add(o.ID(), "spec.wait", "must be true (wait for health)")
			}
		})
	},
}, {
	Name:   "flux-intervals",
	Why:    "how often Flux reconciles, how long it waits and when it retries are decisions, not defaults",
	Broken: mutate(production, "Kustomization", "apps", del("spec.retryInterval")),
	Check: func(s *Set, r *Report) {
		eachKustomization(s, func(name string, o Object, m map[string]any) {
			for _, f := range []string{"interval", "timeout", "retryInterval"} {
				if v, _, _ := nestedString(m, "spec", f); v == "" {
					r.Add(o.ID(), "spec."+f, "must be set")
				}
			}
		})
	},
}, {
	Name:   "flux-depends-on-exists",
	Why:    "a Kustomization waiting for one that does not exist is never applied",
	Broken: mutate(production, "Kustomization", "apps", addDependency("infra-monitoring")),
	Check: func(s *Set, r *Report) {
		ks := kustomizations(s)
		eachKustomization(s, func(name string, o Object, m map[string]any) {
			deps, _, _ := unstructured.NestedSlice(m, "spec", "dependsOn")
			for _, d := range deps {
				dn, _, _ := unstructured.NestedString(d.(map[string]any), "name")
				if _, ok := ks[dn]; !ok {
					r.Add(o.ID(), "spec.dependsOn", "%s does not exist", dn)
				}
			}
		})
	},
}, {
	Name:   "flux-path-exists",
	Why:    "a Kustomization whose path is not in the repository fails to build, and everything after it waits",
	Broken: mutate(minikube, "Kustomization", "apps", set("spec.path", "./kustomize/overlays/staging")),
	Check: func(s *Set, r *Report) {
		eachKustomization(s, func(name string, o Object, m map[string]any) {
			if p, _, _ := nestedString(m, "spec", "path"); !dirExists(strings.TrimPrefix(path.Clean(p), "./")) {
				r.Add(o.ID(), "spec.path", "%s does not exist in the repository", path.Clean(p))
			}
		})
	},
}, {
	Name:   "flux-source-exists",
	Why:    "a Kustomization reads its manifests from a source the tree defines (only flux-system comes from bootstrap)",
	Broken: mutate(production, "Kustomization", "apps", set("spec.sourceRef.name", "txmesh")),
	Check: func(s *Set, r *Report) {
		eachKustomization(s, func(name string, o Object, m map[string]any) {
			kind, _, _ := nestedString(m, "spec", "sourceRef", "kind")
			src, _, _ := nestedString(m, "spec", "sourceRef", "name")
			if (kind != "GitRepository" || src != "flux-system") && s.find(kind, "", src) == nil {
				r.Add(o.ID(), "spec.sourceRef", "%s %s does not exist", kind, src)
			}
		})
	},
}, {
	Name:   "flux-layer-order",
	Why:    "the apps need the mesh policy, which needs the controllers' CRDs: infra-controllers → infra-configs → apps",
	Broken: mutate(production, "Kustomization", "apps", firstDep(func(d map[string]any) { d["name"] = "infra-controllers" })),
	Check: func(s *Set, r *Report) {
		ks := kustomizations(s)
		chains := [][2]string{{"infra-configs", "infra-controllers"}, {"apps", "infra-configs"}}
		if s.NoConfigs {
			chains = [][2]string{{"apps", "infra-controllers"}}
		}
		for _, chain := range chains {
			o, ok := ks[chain[0]]
			if !ok {
				r.Add(id("Kustomization", "", chain[0]), "", "missing from the cluster's Flux tree")
				continue
			}
			deps, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "dependsOn")
			found := false
			for _, d := range deps {
				if n, _, _ := unstructured.NestedString(d.(map[string]any), "name"); n == chain[1] {
					found = true
				}
			}
			if !found {
				r.Add(o.ID(), "spec.dependsOn", "must include %s", chain[1])
			}
		}
	},
}, {
	Name:   "helm-chart-pinned",
	Why:    "a chart range upgrades the platform whenever upstream publishes, untested",
	Broken: mutate(production, "HelmRelease", "kiali", set("spec.chart.spec.version", ">=2.0.0")),
	Check: func(s *Set, r *Report) {
		for _, o := range s.kind("HelmRelease") {
			if v, _, _ := nestedString(o.U.Object, "spec", "chart", "spec", "version"); !semverExact.MatchString(v) {
				r.Add(o.ID(), "spec.chart.spec.version", "%q must be an exact version", v)
			}
		}
	},
}, {
	Name:   "helm-source-exists",
	Why:    "a HelmRelease whose chart repository the tree does not define is never installed",
	Broken: mutate(production, "HelmRelease", "cert-manager", set("spec.chart.spec.sourceRef.name", "jetstak")),
	Check: func(s *Set, r *Report) {
		for _, o := range s.kind("HelmRelease") {
			m := o.U.Object
			kind, _, _ := nestedString(m, "spec", "chart", "spec", "sourceRef", "kind")
			name, _, _ := nestedString(m, "spec", "chart", "spec", "sourceRef", "name")
			ns, _, _ := nestedString(m, "spec", "chart", "spec", "sourceRef", "namespace")
			if ns == "" {
				ns = o.U.GetNamespace()
			}
			if s.find(kind, ns, name) == nil {
				r.Add(o.ID(), "spec.chart.spec.sourceRef", "%s %s/%s does not exist", kind, ns, name)
			}
		}
	},
}, {
	Name:   "helm-depends-on-exists",
	Why:    "a HelmRelease waiting for a release that does not exist is never installed",
	Broken: mutate(production, "HelmRelease", "istiod", firstDep(func(d map[string]any) { d["name"] = "istio-bse" })),
	Check: func(s *Set, r *Report) {
		for _, o := range s.kind("HelmRelease") {
			deps, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "dependsOn")
			for _, d := range deps {
				dm := d.(map[string]any)
				dn, _, _ := unstructured.NestedString(dm, "name")
				dns, _, _ := unstructured.NestedString(dm, "namespace")
				if dns == "" {
					dns = o.U.GetNamespace()
				}
				if s.find("HelmRelease", dns, dn) == nil {
					r.Add(o.ID(), "spec.dependsOn", "HelmRelease %s/%s does not exist", dns, dn)
				}
			}
		}
	},
}, {
	Name:   "namespaces-exist",
	Why:    "an object in a namespace nobody creates fails to apply",
	Broken: mutate(minikube, "HelmRelease", "flagger-loadtester", set("metadata.namespace", "flagger-test")),
	Check: func(s *Set, r *Report) {
		have := map[string]bool{"flux-system": true, "kube-system": true, "default": true}
		for _, o := range s.kind("Namespace") {
			have[o.U.GetName()] = true
		}
		for _, o := range s.Objects {
			if ns := o.U.GetNamespace(); ns != "" && !have[ns] {
				r.Add(o.ID(), "metadata.namespace", "%s is not created by this cluster's Flux tree", ns)
			}
		}
	},
}, {
	Name:   "image-automation-marker",
	Why:    "image automation writes a new tag only where a setter marker names an existing ImagePolicy",
	Broken: mutate(production, "ImagePolicy", "txmesh", set("metadata.name", "txmesh-app")),
	Check: func(s *Set, r *Report) {
		for _, o := range s.kind("ImageUpdateAutomation") {
			p, _, _ := nestedString(o.U.Object, "spec", "update", "path")
			text, err := readRepoFile(strings.TrimPrefix(p, "./") + "/kustomization.yaml")
			if err != nil {
				r.Add(o.ID(), "spec.update.path", "%s has no kustomization.yaml", p)
				continue
			}
			markers := imagePolicyMarker.FindAllStringSubmatch(text, -1)
			if len(markers) == 0 {
				r.Add(o.ID(), "spec.update.path", "%s has no $imagepolicy setter marker", p)
			}
			for _, mk := range markers {
				if s.find("ImagePolicy", mk[1], mk[2]) == nil {
					r.Add(o.ID(), "spec.update.path", "the marker in %s names ImagePolicy %s/%s, which does not exist", p, mk[1], mk[2])
				}
			}
		}
	},
}, {
	Name:   "image-policy-semver",
	Why:    "releases are semver tags: any other order could pick an older image as the latest",
	Broken: mutate(production, "ImagePolicy", "txmesh", set("spec.policy", map[string]any{"alphabetical": map[string]any{"order": "asc"}})),
	Check: func(s *Set, r *Report) {
		for _, p := range s.kind("ImagePolicy") {
			if rg, _, _ := nestedString(p.U.Object, "spec", "policy", "semver", "range"); rg == "" {
				r.Add(p.ID(), "spec.policy.semver.range", "must select tags by semver")
			}
		}
	},
}, {
	Name:   "image-tag-in-policy-range",
	Why:    "the tag an overlay deploys must be one its ImagePolicy would pick from the repository it scans, or the first scan swaps in another image",
	Broken: mutate(minikube, "ImagePolicy", "txmesh", set("spec.policy.semver.range", ">=1.0.0")),
	Check: func(s *Set, r *Report) {
		for _, o := range s.kind("ImageUpdateAutomation") {
			p, _, _ := nestedString(o.U.Object, "spec", "update", "path")
			file := strings.TrimPrefix(path.Clean(p), "./") + "/kustomization.yaml"
			text, err := readRepoFile(file)
			if err != nil {
				continue // image-automation-marker reports it
			}
			for _, e := range markedImages(text) {
				policy := s.find("ImagePolicy", e.namespace, e.policy)
				if policy == nil || localImage(e.image) {
					continue // a missing policy is image-automation-marker's; an imported image has no registry to scan
				}
				field := file + " images[" + e.name + "]"
				repoName, _, _ := nestedString(policy.U.Object, "spec", "imageRepositoryRef", "name")
				if repo := s.find("ImageRepository", e.namespace, repoName); repo != nil {
					if img, _, _ := nestedString(repo.U.Object, "spec", "image"); img != e.image {
						r.Add(repo.ID(), "spec.image", "scans %s, but %s deploys %s", img, field, e.image)
					}
				}
				if pattern, ok, _ := nestedString(policy.U.Object, "spec", "filterTags", "pattern"); ok {
					if re, err := regexp.Compile(pattern); err != nil || !re.MatchString(e.tag) {
						r.Add(policy.ID(), "spec.filterTags.pattern", "%q filters out %s's tag %s", pattern, field, e.tag)
					}
				}
				rng, _, _ := nestedString(policy.U.Object, "spec", "policy", "semver", "range")
				if rng == "" {
					continue // not semver: image-policy-semver's
				}
				c, err := semver.NewConstraint(rng)
				if err != nil {
					r.Add(policy.ID(), "spec.policy.semver.range", "%q: %v", rng, err)
					continue
				}
				if v, err := semver.NewVersion(e.tag); err != nil || !c.Check(v) {
					r.Add(policy.ID(), "spec.policy.semver.range", "%q does not take %s's tag %s", rng, field, e.tag)
				}
			}
		}
	},
}, {
	Name: "backup-plugin-leaves-quickly",
	Why: "CloudNativePG reconciles a Cluster that names the Barman Cloud plugin only while it reaches it: a plugin " +
		"stuck on a lost node (300 s default tolerations) or gone during a drain stalls every failover and switchover",
	Broken: mutate(production, "HelmRelease", "plugin-barman-cloud", del("spec.values.tolerations")),
	Check: func(s *Set, r *Report) {
		for _, o := range s.kind("HelmRelease") {
			if chart, _, _ := nestedString(o.U.Object, "spec", "chart", "spec", "chart"); chart != "plugin-barman-cloud" {
				continue
			}
			tols, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "values", "tolerations")
			for _, key := range []string{"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} {
				ok := false
				for _, t := range tols {
					m, _ := t.(map[string]any)
					secs, _ := m["tolerationSeconds"].(int64)
					if f, isFloat := m["tolerationSeconds"].(float64); isFloat {
						secs = int64(f)
					}
					ok = ok || (m["key"] == key && m["effect"] == "NoExecute" && secs > 0 && secs <= 30)
				}
				if !ok {
					r.Add(o.ID(), "spec.values.tolerations", "needs a NoExecute toleration of %s of at most 30 s", key)
				}
			}
			renderers, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "postRenderers")
			if !strings.Contains(fmt.Sprint(renderers), "preStop") {
				r.Add(o.ID(), "spec.postRenderers", "needs a preStop sleep: evicted, the plugin must serve on while the operator switches primaries over")
			}
		}
	},
}, {
	Name:   "chart-matches-validated-api",
	Why:    "the manifests are validated against one API version: the chart installed must be the one that serves it",
	Broken: mutate(production, "HelmRelease", "flagger", set("spec.chart.spec.version", "1.43.0")),
	Check: func(s *Set, r *Report) {
		want := map[string]string{}
		if v, err := ModuleVersion("github.com/fluxcd/flagger"); err == nil {
			want["flagger"] = strings.TrimPrefix(v, "v")
		}
		if v, err := ModuleVersion("istio.io/api"); err == nil {
			for _, c := range []string{"base", "istiod", "cni"} {
				want[c] = strings.TrimPrefix(v, "v")
			}
		}
		for chart, v := range ChartForAPI {
			want[chart] = v
		}
		for _, o := range s.kind("HelmRelease") {
			chart, _, _ := nestedString(o.U.Object, "spec", "chart", "spec", "chart")
			v, _, _ := nestedString(o.U.Object, "spec", "chart", "spec", "version")
			if w, ok := want[chart]; ok && w != v {
				r.Add(o.ID(), "spec.chart.spec.version", "chart %s %s, but the manifests are validated against the API of chart %s", chart, v, w)
			}
		}
	},
}}

// markedImage is an images entry of a kustomization whose newTag carries a $imagepolicy setter marker.
type markedImage struct {
	name, image, tag  string // the entry's name, the image it deploys (newName, else name), newTag
	namespace, policy string // the ImagePolicy of the marker
}

// markedImages reads the images entries with a ":tag" setter marker from a kustomization's text (the marker
// is a YAML comment, so the text, not the parsed document, holds it).
func markedImages(text string) []markedImage {
	var out []markedImage
	var cur markedImage
	for _, line := range strings.Split(text, "\n") {
		field := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		key, value, _ := strings.Cut(field, ":")
		value = strings.TrimSpace(strings.SplitN(value, "#", 2)[0])
		switch key {
		case "name":
			if strings.HasPrefix(strings.TrimSpace(line), "- ") {
				cur = markedImage{name: value, image: value}
			}
		case "newName":
			cur.image = value
		case "newTag":
			if m := imagePolicyMarker.FindStringSubmatch(line); m != nil && m[3] == ":tag" {
				cur.tag, cur.namespace, cur.policy = value, m[1], m[2]
				out = append(out, cur)
			}
		}
	}
	return out
}

var imagePolicyMarker = regexp.MustCompile(`\{"\$imagepolicy":\s*"([^:"]+):([^:"]+)(:tag|:name|:digest)?"\}`)

// kustomizations are the set's Flux Kustomizations by name.
func kustomizations(s *Set) map[string]Object {
	ks := map[string]Object{}
	for _, o := range s.kind("Kustomization") {
		if o.GVK().Group == "kustomize.toolkit.fluxcd.io" {
			ks[o.U.GetName()] = o
		}
	}
	return ks
}

// eachKustomization calls f with the set's Flux Kustomizations in name order.
func eachKustomization(s *Set, f func(name string, o Object, m map[string]any)) {
	ks := kustomizations(s)
	names := make([]string, 0, len(ks))
	for n := range ks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f(n, ks[n], ks[n].U.Object)
	}
}

// addDependency appends a dependsOn entry to a Flux Kustomization.
func addDependency(name string) func(map[string]any) {
	return func(m map[string]any) {
		deps, _, _ := unstructured.NestedSlice(m, "spec", "dependsOn")
		_ = unstructured.SetNestedSlice(m, append(deps, map[string]any{"name": name}), "spec", "dependsOn")
	}
}

// bootstrapNamespace is where `flux bootstrap` installs Flux; it creates it, not the tree.
const bootstrapNamespace = "flux-system"
