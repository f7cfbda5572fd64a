package manifests

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// callerRules: the Bank serves only the callers on its ALLOWED_CALLERS (a 403 caller_not_allowed for anyone
// else, which the Store retries forever), identified in the mesh by the SPIFFE ID the Bank's sidecar verified.
var callerRules = []Rule{{
	Name:   "bank-allows-callers",
	Why:    "the Bank refuses to start with an empty ALLOWED_CALLERS: it would serve no one",
	Broken: mutate(e2e, "ConfigMap", "bank-config", del("data.ALLOWED_CALLERS")),
	Check: func(s *Set, r *Report) {
		eachBank(s, r, func(d *appsv1.Deployment, c corev1.Container, env map[string]string) {
			if len(allowedCallers(env)) == 0 {
				r.Add(id("Deployment", d.Namespace, d.Name), envField(c.Name, "ALLOWED_CALLERS"), "empty: the Bank would refuse to start")
			}
		})
	},
}, {
	Name:   "caller-identity-source",
	Why:    "the caller is the sidecar's verified peer in the mesh (xfcc) and the app's own client certificate without it (tls)",
	Broken: mutate(production, "ConfigMap", "bank-config", set("data.CALLER_IDENTITY", "none")),
	Check: func(s *Set, r *Report) {
		eachBank(s, r, func(d *appsv1.Deployment, c corev1.Container, env map[string]string) {
			src := env["CALLER_IDENTITY"]
			switch {
			case s.Mesh && src != "xfcc":
				r.Add(id("Deployment", d.Namespace, d.Name), envField(c.Name, "CALLER_IDENTITY"), "%q: in the mesh the caller's identity comes from the sidecar: xfcc", src)
			case !s.Mesh && src != "" && src != "auto" && src != "tls":
				r.Add(id("Deployment", d.Namespace, d.Name), envField(c.Name, "CALLER_IDENTITY"), "%q: without the mesh the caller is the app's own verified client certificate: tls", src)
			}
		})
	},
}, {
	Name:   "sidecar-sets-xfcc",
	Why:    "the Bank's sidecar must drop a caller's own X-Forwarded-Client-Cert and set only what it verified (SANITIZE_SET)",
	Broken: mutate(minikube, "Deployment", "bank", annotate("proxy.istio.io/config", "holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 35s\n")),
	Check: func(s *Set, r *Report) {
		if !s.Mesh {
			return
		}
		eachBank(s, r, func(d *appsv1.Deployment, _ corev1.Container, _ map[string]string) {
			cfg := map[string]any{}
			_ = yaml.Unmarshal([]byte(d.Spec.Template.Annotations["proxy.istio.io/config"]), &cfg)
			if v, _, _ := unstructured.NestedString(cfg, "proxyHeaders", "forwardedClientCert"); v != "SANITIZE_SET" {
				r.Add(id("Deployment", d.Namespace, d.Name), "spec.template.metadata.annotations[proxy.istio.io/config]", "proxyHeaders.forwardedClientCert %q, want SANITIZE_SET (Istio's APPEND_FORWARD keeps what a plaintext caller sent)", v)
			}
		})
	},
}, {
	Name:   "bank-allows-its-clients",
	Why:    "every workload whose BANK_URL reaches the Bank must be on its ALLOWED_CALLERS by its SPIFFE ID, or each of its requests is refused",
	Broken: mutate(minikube, "ConfigMap", "bank-config", set("data.ALLOWED_CALLERS", "spiffe://cluster.local/ns/loadtester/sa/default")),
	Check: func(s *Set, r *Report) {
		if !s.Mesh {
			return // the apps' own certificates are issued outside the manifests (test/cluster/txmesh/tls.go)
		}
		ds := deployments(s, nil)
		need := map[string]map[string]string{} // Bank → identity → who has it
		eachBankClient(s, nil, func(store, _ string, _ map[string]string, _ *url.URL, _ map[string]string, bank string) {
			for _, d := range ds {
				if id("Deployment", d.Namespace, d.Name) == store {
					if need[bank] == nil {
						need[bank] = map[string]string{}
					}
					need[bank][spiffeID(d.Namespace, d.Spec.Template.Spec.ServiceAccountName)] = store
				}
			}
		})
		eachBank(s, r, func(d *appsv1.Deployment, c corev1.Container, env map[string]string) {
			missing(r, d, c, env, need[d.Name])
		})
	},
}, {
	Name:   "bank-allows-flagger-webhooks",
	Why:    "Flagger's acceptance and load tests call the canary Bank from flagger-loadtester, which the Bank must allow",
	Broken: mutate(production, "ConfigMap", "bank-config", set("data.ALLOWED_CALLERS", "spiffe://cluster.local/ns/txmesh/sa/store")),
	Check: func(s *Set, r *Report) {
		if !s.Mesh {
			return // make e2e's harness serves the webhooks with its own certificate (test/cluster)
		}
		eachBank(s, r, func(d *appsv1.Deployment, c corev1.Container, env map[string]string) {
			cn := canaryFor(s, d.Name)
			if cn == nil || cn.Spec.Analysis == nil {
				return
			}
			need := map[string]string{}
			for _, w := range cn.Spec.Analysis.Webhooks {
				u, err := url.Parse(w.URL)
				if err != nil {
					continue
				}
				// flagger-loadtester.<namespace>: chart loadtester (rbac.create false) runs it as the namespace's
				// default ServiceAccount.
				if host := strings.Split(u.Hostname(), "."); len(host) >= 2 && host[0] == "flagger-loadtester" {
					if sid := spiffeID(host[1], ""); need[sid] == "" {
						need[sid] = "Canary " + cn.Name + " webhook " + w.Name
					}
				}
			}
			missing(r, d, c, env, need)
		})
	},
}}

// eachBank calls f with each Bank container (`/bank serve`) of the set's Deployments and its environment.
func eachBank(s *Set, r *Report, f func(d *appsv1.Deployment, c corev1.Container, env map[string]string)) {
	for _, d := range deployments(s, r) {
		for _, c := range appContainers(d) {
			if len(c.Args) > 0 && path.Base(c.Args[0]) == "bank" && slices.Contains(c.Args, "serve") {
				f(d, c, containerEnv(s, c))
			}
		}
	}
}

// allowedCallers is ALLOWED_CALLERS as the Bank reads it: identities separated by ';' or newlines.
func allowedCallers(env map[string]string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(env["ALLOWED_CALLERS"], func(r rune) bool { return r == ';' || r == '\n' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// spiffeID is the identity Istio gives a ServiceAccount's workloads (trust domain cluster.local).
func spiffeID(ns, sa string) string {
	if sa == "" {
		sa = "default"
	}
	return fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa)
}

// missing reports each identity of need (identity → who has it) that the Bank's ALLOWED_CALLERS lacks.
func missing(r *Report, d *appsv1.Deployment, c corev1.Container, env map[string]string, need map[string]string) {
	allowed := allowedCallers(env)
	ids := make([]string, 0, len(need))
	for sid := range need {
		ids = append(ids, sid)
	}
	sort.Strings(ids)
	for _, sid := range ids {
		if !slices.Contains(allowed, sid) {
			r.Add(id("Deployment", d.Namespace, d.Name), envField(c.Name, "ALLOWED_CALLERS"), "lacks %s, the identity of %s, which calls the Bank", sid, need[sid])
		}
	}
}
