package manifests

import (
	"sort"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// netpolRules: the flows CloudNativePG and the apps need pass the rendered NetworkPolicies, and the flows
// nobody needs do not — evaluated offline with Kubernetes' semantics (netpol.go) against where each
// environment serves its API server (Environments). make e2e proves the same with enforcement on its cluster.
var netpolRules = []Rule{{
	Name:   "netpol-database-reaches-apiserver",
	Why:    "the instance manager is a controller: cut off from the API server, as its platform serves it, it cannot report, hold its lease or fail over",
	Broken: mutate(minikube, "NetworkPolicy", "databases-apiserver", egressPorts(443)),
	Check: func(s *Set, r *Report) {
		nps := networkPolicies(s, r)
		for _, db := range databasePods(s) {
			if !s.APIServer.IsValid() {
				r.Add(db.owner, "", "the environment names no API server endpoint (Environments in rules.go)")
				continue
			}
			f := flow{db.endpoint, addrEndpoint("the API server "+s.APIServer.Addr().String(), s.APIServer.Addr()), int32(s.APIServer.Port())}
			if ok, why := f.verdict(nps); !ok {
				r.Add(db.owner, "", "%s refused: %s", f, why)
			}
		}
	},
}, {
	Name:   "netpol-database-reaches-backup-storage",
	Why:    "WAL archiving and base backups upload to object storage: a refused upload stops the archive, and point-in-time recovery with it",
	Broken: mutate(production, "NetworkPolicy", "databases-https", onlyTo("203.0.113.10/32", 443)),
	Check: func(s *Set, r *Report) {
		nps := networkPolicies(s, r)
		for _, db := range databasePods(s) {
			if !db.archives {
				continue
			}
			var f flow
			switch {
			case s.BackupStorage.IsValid():
				f = flow{db.endpoint, addrEndpoint("object storage "+s.BackupStorage.Addr().String(), s.BackupStorage.Addr()), int32(s.BackupStorage.Port())}
			default:
				r.Add(db.owner, "spec.plugins", "archives WAL, but the environment names no object store (Environments in rules.go)")
				continue
			}
			if ok, why := f.verdict(nps); !ok {
				r.Add(db.owner, "", "%s refused: %s", f, why)
			}
		}
	},
}, {
	Name:   "netpol-operator-reaches-instances",
	Why:    "CloudNativePG's operator reads each instance's status on 8000 and manages PostgreSQL on 5432, its documented paths",
	Broken: mutate(production, "NetworkPolicy", "databases", operatorNamespace("cnpg-operator")),
	Check: func(s *Set, r *Report) {
		nps := networkPolicies(s, r)
		operator := podEndpoint("the CloudNativePG operator (cnpg-system)", "cnpg-system",
			labels.Set{"app.kubernetes.io/name": "cloudnative-pg"}, nil)
		for _, db := range databasePods(s) {
			for _, port := range []int32{8000, 5432} {
				f := flow{operator, db.endpoint, port}
				if ok, why := f.verdict(nps); !ok {
					r.Add(db.owner, "", "%s refused: %s", f, why)
				}
			}
		}
	},
}, {
	Name:   "netpol-instances-replicate",
	Why:    "standbys stream from their primary on 5432 and a primary asks its peers on 8000 before fencing itself",
	Broken: mutate(e2e, "NetworkPolicy", "bank-db-instances", del("spec.egress")),
	Check: func(s *Set, r *Report) {
		nps := networkPolicies(s, r)
		for _, db := range databasePods(s) {
			peer := db.endpoint
			peer.name = "another instance of " + db.cluster
			for _, port := range []int32{5432, 8000} {
				f := flow{db.endpoint, peer, port}
				if ok, why := f.verdict(nps); !ok {
					r.Add(db.owner, "", "%s refused: %s", f, why)
				}
			}
		}
	},
}, {
	Name:   "netpol-clients-reach-their-database",
	Why:    "a pod given a database's credentials (Bank, Store, seed, audit) is meant to reach that database on 5432",
	Broken: mutate(e2eOverlay, "NetworkPolicy", "store-egress", dropEgressRule(0)),
	Check: func(s *Set, r *Report) {
		nps := networkPolicies(s, r)
		dbs := databasePods(s)
		for _, c := range clientPods(s) {
			for _, db := range dbs {
				if !c.holds[db.cluster] {
					continue
				}
				f := flow{c.endpoint, db.endpoint, 5432}
				if ok, why := f.verdict(nps); !ok {
					r.Add(c.owner, "", "%s refused although it holds credentials for %s: %s", f, db.cluster, why)
				}
			}
		}
	},
}, {
	Name: "netpol-no-foreign-database",
	Why:  "a pod reaches only the databases whose credentials it holds: a compromised Bank must not even connect to store-db",
	Broken: mutate(production, "NetworkPolicy", "bank-egress", egressPeer0(map[string]any{"matchExpressions": []any{
		map[string]any{"key": "cnpg.io/cluster", "operator": "In", "values": []any{"bank-db", "store-db"}}}})),
	Check: func(s *Set, r *Report) {
		nps := networkPolicies(s, r)
		if len(nps) == 0 {
			return // no policies, no isolation claimed (TestNetworkPoliciesSelectPods wants them in e2e)
		}
		dbs := databasePods(s)
		strangers := clientPods(s)
		namespaces := map[string]bool{}
		for _, db := range dbs {
			namespaces[db.namespace] = true
		}
		for _, ns := range sortedKeys(namespaces) {
			strangers = append(strangers, netpolPod{endpoint: podEndpoint("an unlabelled pod of "+ns, ns, labels.Set{}, nil),
				owner: "Namespace " + ns})
		}
		for _, db := range dbs {
			strangers = append(strangers, netpolPod{endpoint: db.endpoint, owner: db.owner, holds: map[string]bool{db.cluster: true}})
		}
		for _, c := range strangers {
			for _, db := range dbs {
				if c.holds[db.cluster] {
					continue
				}
				f := flow{c.endpoint, db.endpoint, 5432}
				if ok, _ := f.verdict(nps); ok {
					r.Add(c.owner, "", "%s passes, but it holds no credentials for %s", f, db.cluster)
				}
			}
		}
	},
}}

// netpolPod is a pod of the set as a flow endpoint: who owns it, which databases' credentials it reads
// (clients), or which cluster it is an instance of (databases).
type netpolPod struct {
	endpoint
	owner    string
	holds    map[string]bool
	cluster  string
	archives bool // an instance whose cluster archives WAL (a plugin with isWALArchiver)
}

// databasePods: one instance pod of each CloudNativePG Cluster (every instance carries the same labels).
func databasePods(s *Set) []netpolPod {
	var out []netpolPod
	for _, o := range s.kind("Cluster") {
		name := o.U.GetName()
		p := netpolPod{endpoint: podEndpoint("an instance of "+name, o.U.GetNamespace(), instanceLabels(name), instancePorts),
			owner: o.ID(), cluster: name}
		plugins, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "plugins")
		for _, pl := range plugins {
			if pm, ok := pl.(map[string]any); ok && pm["isWALArchiver"] == true {
				p.archives = true
			}
		}
		out = append(out, p)
	}
	return out
}

// clientPods: the pods of the Deployments (Flagger's -primary copies included) and Jobs, with the databases
// whose credentials they read.
func clientPods(s *Set) []netpolPod {
	clusters := map[string]bool{}
	for _, o := range s.kind("Cluster") {
		clusters[o.U.GetName()] = true
	}
	var out []netpolPod
	for _, d := range deployments(s, nil) {
		holds := credentials(&d.Spec.Template, clusters)
		for i, l := range servingLabelSets(s, d) {
			name := d.Name
			if i > 0 {
				name += " (Flagger's primary copy)"
			}
			out = append(out, netpolPod{endpoint: podEndpoint(name, d.Namespace, l, nil),
				owner: id("Deployment", d.Namespace, d.Name), holds: holds})
		}
	}
	for _, o := range s.kind("Job") {
		j, err := toTyped[batchv1.Job](o)
		if err != nil {
			continue
		}
		out = append(out, netpolPod{endpoint: podEndpoint("job "+j.Name, o.U.GetNamespace(), labels.Set(j.Spec.Template.Labels), nil),
			owner: o.ID(), holds: credentials(&j.Spec.Template, clusters)})
	}
	return out
}

// credentials: the rendered clusters whose credentials a pod template reads (env, envFrom, volumes): the
// Secrets CloudNativePG writes, <cluster>-app and <cluster>-superuser.
func credentials(t *corev1.PodTemplateSpec, clusters map[string]bool) map[string]bool {
	holds := map[string]bool{}
	note := func(secret string) {
		for _, suffix := range []string{"-app", "-superuser"} {
			if c, ok := strings.CutSuffix(secret, suffix); ok && clusters[c] {
				holds[c] = true
			}
		}
	}
	for _, c := range append(append([]corev1.Container{}, t.Spec.InitContainers...), t.Spec.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				note(e.ValueFrom.SecretKeyRef.Name)
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil {
				note(ef.SecretRef.Name)
			}
		}
	}
	for _, v := range t.Spec.Volumes {
		if v.Secret != nil {
			note(v.Secret.SecretName)
		}
	}
	return holds
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Fixture mutations of NetworkPolicies.

// egressPorts makes every egress rule of a policy allow exactly these TCP ports (its peers unchanged).
func egressPorts(ports ...int64) func(map[string]any) {
	return func(m map[string]any) {
		rules, _, _ := unstructured.NestedSlice(m, "spec", "egress")
		var ps []any
		for _, p := range ports {
			ps = append(ps, map[string]any{"protocol": "TCP", "port": p})
		}
		for _, r := range rules {
			r.(map[string]any)["ports"] = ps
		}
		_ = unstructured.SetNestedSlice(m, rules, "spec", "egress")
	}
}

// onlyTo replaces a policy's egress with one rule: this CIDR, this TCP port.
func onlyTo(cidr string, port int64) func(map[string]any) {
	return set("spec.egress", []any{map[string]any{
		"to":    []any{map[string]any{"ipBlock": map[string]any{"cidr": cidr}}},
		"ports": []any{map[string]any{"protocol": "TCP", "port": port}},
	}})
}

// operatorNamespace points the databases policy's operator peer (the ingress rule whose peer selects
// app.kubernetes.io/name=cloudnative-pg) at another namespace.
func operatorNamespace(ns string) func(map[string]any) {
	return func(m map[string]any) {
		rules, _, _ := unstructured.NestedSlice(m, "spec", "ingress")
		for _, r := range rules {
			from, _, _ := unstructured.NestedSlice(r.(map[string]any), "from")
			for _, p := range from {
				pm := p.(map[string]any)
				if v, _, _ := unstructured.NestedString(pm, "podSelector", "matchLabels", "app.kubernetes.io/name"); v == "cloudnative-pg" {
					_ = unstructured.SetNestedField(pm, ns, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name")
				}
			}
			_ = unstructured.SetNestedSlice(r.(map[string]any), from, "from")
		}
		_ = unstructured.SetNestedSlice(m, rules, "spec", "ingress")
	}
}

// dropEgressRule removes the i-th egress rule of a policy.
func dropEgressRule(i int) func(map[string]any) {
	return func(m map[string]any) {
		rules, _, _ := unstructured.NestedSlice(m, "spec", "egress")
		_ = unstructured.SetNestedSlice(m, append(rules[:i:i], rules[i+1:]...), "spec", "egress")
	}
}

// egressPeer0 replaces the podSelector of the first peer of the first egress rule.
func egressPeer0(selector map[string]any) func(map[string]any) {
	return func(m map[string]any) {
		rules, _, _ := unstructured.NestedSlice(m, "spec", "egress")
		to := rules[0].(map[string]any)["to"].([]any)
		to[0].(map[string]any)["podSelector"] = selector
		_ = unstructured.SetNestedSlice(m, rules, "spec", "egress")
	}
}
