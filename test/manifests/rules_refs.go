package manifests

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// referenceRules: every name and selector points at something the set renders.
var referenceRules = []Rule{{
	Name:   "hpa-target-exists",
	Why:    "an HPA whose target is not rendered scales nothing, and the Deployment it meant stays at its floor",
	Broken: mutate(production, "HorizontalPodAutoscaler", "store", set("spec.scaleTargetRef.name", "stor")),
	Check: func(s *Set, r *Report) {
		byName := deploymentsByName(s, r)
		for _, h := range s.kind("HorizontalPodAutoscaler") {
			kind, _, _ := nestedString(h.U.Object, "spec", "scaleTargetRef", "kind")
			n, _, _ := nestedString(h.U.Object, "spec", "scaleTargetRef", "name")
			if kind != "Deployment" || byName[n] == nil {
				r.Add(h.ID(), "spec.scaleTargetRef", "targets %s %s, which is not rendered", kind, n)
			}
		}
	},
}, {
	Name:   "canary-target-exists",
	Why:    "Flagger cannot analyse or promote a Canary whose Deployment or autoscaler is not rendered",
	Broken: mutate(production, "Canary", "bank", set("spec.autoscalerRef.name", "bank-hpa")),
	Check: func(s *Set, r *Report) {
		byName := deploymentsByName(s, r)
		for _, c := range canaries(s) {
			if byName[c.Spec.TargetRef.Name] == nil {
				r.Add(id("Canary", c.Namespace, c.Name), "spec.targetRef", "targets Deployment %s, which is not rendered", c.Spec.TargetRef.Name)
			}
			if a := c.Spec.AutoscalerRef; a != nil && s.find("HorizontalPodAutoscaler", "", a.Name) == nil {
				r.Add(id("Canary", c.Namespace, c.Name), "spec.autoscalerRef", "HorizontalPodAutoscaler %s is not rendered", a.Name)
			}
		}
	},
}, {
	Name:   "pdb-covers-serving-pods",
	Why:    "a PodDisruptionBudget that misses some serving pods (Flagger's -primary copies) lets a drain take them all",
	Broken: mutate(production, "PodDisruptionBudget", "bank", set("spec.selector", map[string]any{"matchLabels": map[string]any{"app": "bank"}})),
	Check: func(s *Set, r *Report) {
		ds := deployments(s, r)
		for _, p := range s.kind("PodDisruptionBudget") {
			sel := &metav1.LabelSelector{}
			if b, err := yaml.Marshal(p.U.Object["spec"].(map[string]any)["selector"]); err == nil {
				_ = yaml.Unmarshal(b, sel)
			}
			selector, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil {
				r.Add(p.ID(), "spec.selector", "%v", err)
				continue
			}
			matched := false
			for _, d := range ds {
				sets := servingLabelSets(s, d)
				all, some := len(sets) > 0, false
				for _, ls := range sets {
					if selector.Matches(ls) {
						some = true
					} else {
						all = false
					}
				}
				if some && !all {
					r.Add(p.ID(), "spec.selector", "selects some but not all serving pods of %s (Flagger's -primary pods included)", d.Name)
				}
				matched = matched || some
			}
			if !matched {
				r.Add(p.ID(), "spec.selector", "selects no running pods")
			}
		}
	},
}, {
	Name:   "service-selects-pods",
	Why:    "a Service that selects no pod has no endpoints: its clients get connection refused",
	Broken: mutate(e2eOverlay, "Service", "store", set("spec.selector.app", "stor")),
	Check: func(s *Set, r *Report) {
		ds := deployments(s, r)
		for _, svc := range s.kind("Service") {
			sel, _, _ := unstructured.NestedStringMap(svc.U.Object, "spec", "selector")
			ok := false
			for _, d := range ds {
				for _, ls := range servingLabelSets(s, d) {
					if labels.SelectorFromSet(sel).Matches(ls) {
						ok = true
					}
				}
			}
			if !ok {
				r.Add(svc.ID(), "spec.selector", "selects no pods")
			}
		}
	},
}, {
	Name: "database-url-from-cnpg-secret",
	Why:  "the apps connect with the credentials CloudNativePG keeps in <cluster>-app, through its -rw Service",
	Broken: mutate(production, "Deployment", "store", container0(func(c map[string]any) {
		env := c["env"].([]any)
		_ = unstructured.SetNestedField(env[0].(map[string]any), "store-db-superuser", "valueFrom", "secretKeyRef", "name")
	})),
	Check: func(s *Set, r *Report) {
		clusters := map[string]bool{}
		for _, c := range s.kind("Cluster") {
			clusters[c.U.GetName()] = true
		}
		for _, t := range sortedTemplates(s) {
			for _, c := range containersOf(t.t) {
				for _, e := range c.Env {
					if e.Name == "DATABASE_URL" && !fromAppSecret(e.ValueFrom, clusters) {
						r.Add(t.id, c.field("env[DATABASE_URL]"), "must come from secret <cluster>-app key uri of a rendered CloudNativePG Cluster")
					}
				}
			}
		}
	},
}}

func deploymentsByName(s *Set, r *Report) map[string]*appsv1.Deployment {
	out := map[string]*appsv1.Deployment{}
	for _, d := range deployments(s, r) {
		out[d.Name] = d
	}
	return out
}

// fromAppSecret: the value comes from the key uri of the secret <cluster>-app of a rendered Cluster.
func fromAppSecret(ref *corev1.EnvVarSource, clusters map[string]bool) bool {
	if ref == nil || ref.SecretKeyRef == nil {
		return false
	}
	name := ref.SecretKeyRef.Name
	return strings.HasSuffix(name, "-app") && ref.SecretKeyRef.Key == "uri" && clusters[strings.TrimSuffix(name, "-app")]
}
