package manifests

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// tlsRules: who encrypts and authenticates Store ↔ Bank — Envoy in the mesh, the apps themselves without it —
// and the namespace and CRDs a set outside the mesh must bring along.
var tlsRules = []Rule{{
	Name:   "app-mtls-without-mesh",
	Why:    "without the mesh nothing else encrypts or authenticates Store ↔ Bank: each app serves TLS and requires client certificates",
	Broken: mutate(e2e, "ConfigMap", "bank-config", del("data.TLS_CLIENT_CA_FILE")),
	Check: func(s *Set, r *Report) {
		if s.Mesh {
			return
		}
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				env := containerEnv(s, c)
				for _, k := range []string{"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"} {
					if env[k] == "" {
						r.Add(id("Deployment", d.Namespace, d.Name), envField(c.Name, k), "missing: without the mesh the app must serve TLS and require client certificates")
					}
				}
			}
		}
	},
}, {
	Name:   "plain-http-in-mesh",
	Why:    "Envoy does the mTLS and must see HTTP to retry, time out, inject faults and authorise by path",
	Broken: mutate(minikube, "Deployment", "store", servesTLS),
	Check: func(s *Set, r *Report) {
		if !s.Mesh {
			return
		}
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				if containerEnv(s, c)["TLS_CERT_FILE"] != "" {
					r.Add(id("Deployment", d.Namespace, d.Name), envField(c.Name, "TLS_CERT_FILE"), "set: in the mesh the app serves plain HTTP, Envoy does mTLS")
				}
			}
		}
	},
}, {
	Name:   "tls-files-from-secret",
	Why:    "key material comes from a Secret mounted read-only, never from the image or a writable volume",
	Broken: mutate(e2e, "ConfigMap", "bank-config", set("data.TLS_KEY_FILE", "/etc/txmesh/tls.key")),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				env := containerEnv(s, c)
				for _, k := range tlsFiles {
					if f := env[k]; f != "" && !secretFile(&d.Spec.Template, c, f) {
						r.Add(id("Deployment", d.Namespace, d.Name), envField(c.Name, k), "%s is not a key of a Secret volume mounted read-only", f)
					}
				}
			}
		}
	},
}, {
	Name:   "admin-port-declared",
	Why:    "probes, Prometheus and NetworkPolicies find the management listener by the container port named admin",
	Broken: mutate(e2e, "Deployment", "bank", renameAdminPort),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				if _, admin := listeners(containerEnv(s, c)); admin != 0 && portNumber(c, intstr.FromString("admin")) != admin {
					r.Add(id("Deployment", d.Namespace, d.Name), containerField(false, c.Name, "ports"), "ADMIN_ADDR listens on %d, which needs a container port named admin", admin)
				}
			}
		}
	},
}, {
	Name:   "metrics-off-mtls-port",
	Why:    "Prometheus has no client certificate: it scrapes the management listener, not the mTLS port",
	Broken: mutate(e2e, "Deployment", "bank", annotate("prometheus.io/port", "8080")),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				env := containerEnv(s, c)
				main, _ := listeners(env)
				if p := d.Spec.Template.Annotations["prometheus.io/port"]; env["TLS_CLIENT_CA_FILE"] != "" && p == strconv.Itoa(int(main)) {
					r.Add(id("Deployment", d.Namespace, d.Name), "spec.template.metadata.annotations[prometheus.io/port]", "%s requires a client certificate; scrape the ADMIN_ADDR port", p)
				}
			}
		}
	},
}, {
	Name:   "bank-url-matches-bank",
	Why:    "the Store must speak the scheme the Bank serves and verify the Bank's certificate",
	Broken: mutate(e2e, "ConfigMap", "store-config", set("data.BANK_URL", "http://bank.txmesh.svc.cluster.local:8080")),
	Check: func(s *Set, r *Report) {
		eachBankClient(s, r, func(store, container string, env map[string]string, u *url.URL, bankEnv map[string]string, bank string) {
			switch {
			case bankEnv["TLS_CERT_FILE"] != "" && (u.Scheme != "https" || env["BANK_CA_FILE"] == ""):
				r.Add(store, envField(container, "BANK_URL"), "%s serves TLS: BANK_URL must be https and BANK_CA_FILE set", bank)
			case bankEnv["TLS_CERT_FILE"] == "" && u.Scheme != "http":
				r.Add(store, envField(container, "BANK_URL"), "%s serves plain HTTP: BANK_URL must be http", bank)
			}
		})
	},
}, {
	Name:   "store-client-certificate",
	Why:    "a Bank that requires client certificates refuses a Store that presents none",
	Broken: mutate(e2e, "ConfigMap", "store-config", del("data.BANK_CLIENT_CERT_FILE"), del("data.BANK_CLIENT_KEY_FILE")),
	Check: func(s *Set, r *Report) {
		eachBankClient(s, nil, func(store, container string, env map[string]string, _ *url.URL, bankEnv map[string]string, bank string) {
			if bankEnv["TLS_CLIENT_CA_FILE"] != "" && (env["BANK_CLIENT_CERT_FILE"] == "" || env["BANK_CLIENT_KEY_FILE"] == "") {
				r.Add(store, envField(container, "BANK_CLIENT_CERT_FILE"), "%s requires a client certificate: set BANK_CLIENT_CERT_FILE and BANK_CLIENT_KEY_FILE", bank)
			}
		})
	},
}, {
	Name:   "meshless-namespace-created",
	Why:    "without the mesh nothing else creates the namespace (mesh/ does, with injection on), so the set must",
	Broken: mutate(e2eOverlay, "Namespace", "txmesh", set("metadata.name", "txmesh-e2e")),
	Check: func(s *Set, r *Report) {
		if s.Mesh {
			return
		}
		for _, ns := range usedNamespaces(s) {
			if ns == bootstrapNamespace {
				continue // flux bootstrap creates it
			}
			if s.find("Namespace", "", ns) == nil {
				r.Add(id("Namespace", "", ns), "", "used by the set's objects but not created by the set")
			}
		}
	},
}, {
	Name:   "namespace-pod-security-restricted",
	Why:    "every pod of the namespace is held to Pod Security restricted by admission, not only by review",
	Broken: mutate(e2e, "Namespace", "txmesh", label("pod-security.kubernetes.io/audit", "baseline")),
	Check: func(s *Set, r *Report) {
		eachMeshlessNamespace(s, func(o Object, l map[string]string) {
			for _, mode := range []string{"enforce", "audit", "warn"} {
				if key := "pod-security.kubernetes.io/" + mode; l[key] != "restricted" {
					r.Add(o.ID(), "metadata.labels["+key+"]", "must be restricted, not %q", l[key])
				}
			}
		})
	},
}, {
	Name:   "pod-security-version-pinned",
	Why:    "a cluster upgrade must not change the policy the namespace enforces without a commit saying so",
	Broken: mutate(e2e, "Namespace", "txmesh", unlabel("pod-security.kubernetes.io/enforce-version")),
	Check: func(s *Set, r *Report) {
		eachMeshlessNamespace(s, func(o Object, l map[string]string) {
			for _, mode := range []string{"enforce", "audit", "warn"} {
				key := "pod-security.kubernetes.io/" + mode + "-version"
				if v := l[key]; v != "latest" && !psaVersion.MatchString(v) {
					r.Add(o.ID(), "metadata.labels["+key+"]", "must name the policy version (v1.N, or latest), not %q", v)
				}
			}
		})
	},
}, {
	Name:   "no-injection-without-mesh",
	Why:    "a namespace asking Istio for sidecars claims a mesh that is not there",
	Broken: mutate(e2e, "Namespace", "txmesh", label("istio-injection", "enabled")),
	Check: func(s *Set, r *Report) {
		eachMeshlessNamespace(s, func(o Object, l map[string]string) {
			if v, ok := l["istio-injection"]; ok && v != "disabled" {
				r.Add(o.ID(), "metadata.labels[istio-injection]", "%q asks Istio to inject sidecars, but there is no mesh", v)
			}
			if v := l["istio.io/rev"]; v != "" {
				r.Add(o.ID(), "metadata.labels[istio.io/rev]", "%q asks Istio to inject sidecars, but there is no mesh", v)
			}
		})
	},
}, {
	Name: "installed-crds",
	Why:  "a kind whose CRD the cluster lacks fails the whole apply (no Istio or Prometheus Operator in make e2e)",
	Broken: add(e2e, "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: bank-db, namespace: txmesh}\n"+
		"spec:\n  selector:\n    matchLabels: {cnpg.io/cluster: bank-db}\n  podMetricsEndpoints: [{port: metrics}]\n"),
	Check: func(s *Set, r *Report) {
		if s.CRDGroups == nil {
			return
		}
		for _, o := range s.Objects {
			if g := o.GVK().Group; isCustom(o) && !slices.Contains(s.CRDGroups, g) {
				r.Add(o.ID(), "apiVersion", "no CRD for %s in this cluster (installed: %s)", o.GVK().GroupKind(), strings.Join(s.CRDGroups, ", "))
			}
		}
	},
}}

// eachBankClient calls f for every container that calls a Bank (BANK_URL set) and every Bank container its
// BANK_URL's Service sends traffic to; an unparsable BANK_URL is reported to r (nil: not reported).
func eachBankClient(s *Set, r *Report, f func(store, container string, env map[string]string, u *url.URL, bankEnv map[string]string, bank string)) {
	ds := deployments(s, nil)
	for _, d := range ds {
		for _, c := range appContainers(d) {
			env := containerEnv(s, c)
			raw, ok := env["BANK_URL"]
			if !ok {
				continue
			}
			u, err := url.Parse(raw)
			if err != nil {
				if r != nil {
					r.Add(id("Deployment", d.Namespace, d.Name), envField(c.Name, "BANK_URL"), "%q: %v", raw, err)
				}
				continue
			}
			for _, bank := range ds {
				if !servedBy(s, strings.Split(u.Hostname(), ".")[0], bank) {
					continue
				}
				for _, bc := range appContainers(bank) {
					f(id("Deployment", d.Namespace, d.Name), c.Name, env, u, containerEnv(s, bc), bank.Name)
				}
			}
		}
	}
}

// usedNamespaces lists the namespaces the set's objects live in.
func usedNamespaces(s *Set) []string {
	var used []string
	for _, o := range s.Objects {
		if ns := o.U.GetNamespace(); ns != "" && !slices.Contains(used, ns) {
			used = append(used, ns)
		}
	}
	return used
}

// eachMeshlessNamespace calls f with each Namespace the set creates for its objects, when it runs without the
// mesh (in the mesh, mesh/ creates the namespace with injection on).
func eachMeshlessNamespace(s *Set, f func(o Object, labels map[string]string)) {
	if s.Mesh {
		return
	}
	for _, ns := range usedNamespaces(s) {
		if o := s.find("Namespace", "", ns); o != nil {
			f(*o, o.U.GetLabels())
		}
	}
}

// servesTLS breaks a mesh Deployment by making its app serve HTTPS itself, consistently in every other respect:
// the certificate from a Secret mounted read-only, the probes speaking HTTPS.
func servesTLS(m map[string]any) {
	container0(func(c map[string]any) {
		env, _, _ := unstructured.NestedSlice(c, "env")
		env = append(env, map[string]any{"name": "TLS_CERT_FILE", "value": "/etc/txmesh/tls/tls.crt"},
			map[string]any{"name": "TLS_KEY_FILE", "value": "/etc/txmesh/tls/tls.key"})
		_ = unstructured.SetNestedSlice(c, env, "env")
		mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
		mounts = append(mounts, map[string]any{"name": "tls", "mountPath": "/etc/txmesh/tls", "readOnly": true})
		_ = unstructured.SetNestedSlice(c, mounts, "volumeMounts")
		for _, p := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
			_ = unstructured.SetNestedField(c, "HTTPS", p, "httpGet", "scheme")
		}
	})(m)
	vols, _, _ := unstructured.NestedSlice(m, "spec", "template", "spec", "volumes")
	vols = append(vols, map[string]any{"name": "tls", "secret": map[string]any{"secretName": "store-tls"}})
	_ = unstructured.SetNestedSlice(m, vols, "spec", "template", "spec", "volumes")
}

// renameAdminPort breaks an e2e Deployment by renaming its management port (the probes follow the new name).
func renameAdminPort(m map[string]any) {
	container0(func(c map[string]any) {
		ports, _, _ := unstructured.NestedSlice(c, "ports")
		for _, p := range ports {
			if pm := p.(map[string]any); pm["name"] == "admin" {
				pm["name"] = "mgmt"
			}
		}
		_ = unstructured.SetNestedSlice(c, ports, "ports")
		for _, p := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
			_ = unstructured.SetNestedField(c, "mgmt", p, "httpGet", "port")
		}
	})(m)
}
