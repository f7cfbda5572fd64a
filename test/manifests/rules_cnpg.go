package manifests

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// cnpgRules: the two CloudNativePG clusters lose no acknowledged commit when an instance, a node or a zone goes.
var cnpgRules = []Rule{{
	Name:   "cnpg-three-instances",
	Why:    "a failover must leave a synchronous standby behind, or writes stop until the lost instance is back",
	Broken: mutate(minikube, "Cluster", "bank-db", set("spec.instances", int64(2))),
	Check: func(s *Set, r *Report) {
		eachCluster(s, func(o Object, m map[string]any) {
			if n, _, _ := unstructured.NestedInt64(m, "spec", "instances"); n < 3 {
				r.Add(o.ID(), "spec.instances", "%d: needs 3 instances", n)
			}
		})
	},
}, {
	Name:   "cnpg-synchronous-quorum",
	Why:    "a commit is acknowledged only once a standby has it, and only a standby proven to hold it is promoted",
	Broken: mutate(production, "Cluster", "store-db", set("spec.postgresql.synchronous.dataDurability", "preferred")),
	Check: func(s *Set, r *Report) {
		eachCluster(s, func(o Object, m map[string]any) {
			sync, _, _ := unstructured.NestedMap(m, "spec", "postgresql", "synchronous")
			if sync["method"] != "any" || sync["dataDurability"] != "required" || sync["failoverQuorum"] != true {
				r.Add(o.ID(), "spec.postgresql.synchronous", "must be method any, dataDurability required, failoverQuorum true")
			}
			if n, ok := sync["number"].(int64); !ok || n < 1 {
				r.Add(o.ID(), "spec.postgresql.synchronous.number", "must be >= 1")
			}
		})
	},
}, {
	// The values that decide how long a failover or a switchover leaves a database without a writable primary
	// are stated, defaults included: the failover times make e2e measured belong to the manifest, not to
	// whatever the operator defaults to after an upgrade.
	Name:   "cnpg-explicit-failover-settings",
	Why:    "the failover times measured hold for the settings in the manifest, not for the operator's defaults of the day",
	Broken: mutate(e2e, "Cluster", "store-db", del("spec.switchoverDelay")),
	Check: func(s *Set, r *Report) {
		eachCluster(s, func(o Object, m map[string]any) {
			for _, f := range failoverSettings {
				v, found, _ := unstructured.NestedFieldNoCopy(m, strings.Split(f.Path, ".")...)
				switch {
				case !found && f.CRDDefault != nil:
					r.Add(o.ID(), f.Path, "must be stated (the operator's default: %v)", f.CRDDefault)
				case !found:
					r.Add(o.ID(), f.Path, "must be stated")
				case f.Want != nil && fmt.Sprint(v) != fmt.Sprint(f.Want):
					r.Add(o.ID(), f.Path, "%v: must be %v", v, f.Want)
				}
			}
		})
	},
}, {
	Name:   "cnpg-anti-affinity",
	Why:    "instances sharing a node fail together",
	Broken: mutate(production, "Cluster", "bank-db", set("spec.affinity.enablePodAntiAffinity", false)),
	Check: func(s *Set, r *Report) {
		eachCluster(s, func(o Object, m map[string]any) {
			if v, ok, _ := unstructured.NestedBool(m, "spec", "affinity", "enablePodAntiAffinity"); !ok || !v {
				r.Add(o.ID(), "spec.affinity.enablePodAntiAffinity", "must be true")
			}
		})
	},
}, {
	// Preferred lets two instances share a node, and a commit's two copies (primary and sync standby) die with
	// it; accepted only where the environment may have fewer nodes than instances.
	Name:   "cnpg-required-anti-affinity",
	Why:    "with a node per instance, sharing one is a choice, and a commit's two copies would die with that node",
	Broken: mutate(production, "Cluster", "bank-db", set("spec.affinity.podAntiAffinityType", "preferred")),
	Check: func(s *Set, r *Report) {
		eachCluster(s, func(o Object, m map[string]any) {
			if n, _, _ := unstructured.NestedInt64(m, "spec", "instances"); s.MinNodes >= int(n) {
				if t, _, _ := unstructured.NestedString(m, "spec", "affinity", "podAntiAffinityType"); t != "required" {
					r.Add(o.ID(), "spec.affinity.podAntiAffinityType", "must be required: the environment guarantees %d nodes for %d instances", s.MinNodes, n)
				}
			}
		})
	},
}, {
	Name:   "cnpg-no-sidecar",
	Why:    "CloudNativePG does its own TLS and manages its pods' lifecycle: an Envoy in front of PostgreSQL only gets in the way",
	Broken: mutate(minikube, "Cluster", "store-db", del("spec.inheritedMetadata")),
	Check: func(s *Set, r *Report) {
		if !s.Mesh {
			return
		}
		eachCluster(s, func(o Object, m map[string]any) {
			l, _, _ := unstructured.NestedString(m, "spec", "inheritedMetadata", "labels", "sidecar.istio.io/inject")
			a, _, _ := unstructured.NestedString(m, "spec", "inheritedMetadata", "annotations", "sidecar.istio.io/inject")
			if l != "false" && a != "false" {
				r.Add(o.ID(), "spec.inheritedMetadata", `database pods must not get an Istio sidecar (sidecar.istio.io/inject: "false")`)
			}
		})
	},
}, {
	Name:   "cnpg-storage-size",
	Why:    "the size of each instance's volume is a decision, not the operator's default",
	Broken: mutate(production, "Cluster", "bank-db", del("spec.storage.size")),
	Check: func(s *Set, r *Report) {
		eachCluster(s, func(o Object, m map[string]any) {
			if size, _, _ := unstructured.NestedString(m, "spec", "storage", "size"); size == "" {
				r.Add(o.ID(), "spec.storage.size", "must be set")
			}
		})
	},
}, {
	Name:   "cnpg-wal-archiving",
	Why:    "production must restore to any point in time, and recover a lost region, from the archived WAL",
	Broken: mutate(production, "Cluster", "bank-db", del("spec.plugins")),
	Check: func(s *Set, r *Report) {
		if !s.Production {
			return
		}
		eachCluster(s, func(o Object, m map[string]any) {
			plugins, _, _ := unstructured.NestedSlice(m, "spec", "plugins")
			for _, p := range plugins {
				if pm, ok := p.(map[string]any); ok && pm["isWALArchiver"] == true {
					return
				}
			}
			r.Add(o.ID(), "spec.plugins", "production needs continuous WAL archiving (a plugin with isWALArchiver)")
		})
	},
}, {
	Name:   "cnpg-scheduled-backup",
	Why:    "a recent base backup bounds how much WAL a restore must replay",
	Broken: mutate(production, "ScheduledBackup", "bank-db-nightly", set("spec.cluster.name", "bank")),
	Check: func(s *Set, r *Report) {
		if !s.Production {
			return
		}
		eachCluster(s, func(o Object, _ map[string]any) {
			for _, b := range s.kind("ScheduledBackup") {
				if n, _, _ := nestedString(b.U.Object, "spec", "cluster", "name"); n == o.U.GetName() {
					return
				}
			}
			r.Add(o.ID(), "", "production needs a ScheduledBackup of this cluster")
		})
	},
}}

func eachCluster(s *Set, f func(o Object, m map[string]any)) {
	for _, o := range s.kind("Cluster") {
		f(o, o.U.Object)
	}
}

// FailoverSetting is a Cluster field that decides how a failover or a switchover goes, with the default of the
// pinned CloudNativePG's CRD (nil: it has none) and the one value accepted (nil: any value, once stated).
// TestFailoverSettingsInCRD checks each path and default against that CRD.
type FailoverSetting struct {
	Path       string
	CRDDefault any
	Want       any
}

// failoverSettings: what cnpg-explicit-failover-settings requires every Cluster to state (why each value:
// kustomize/base/database/bank-db.yaml).
var failoverSettings = []FailoverSetting{
	{Path: "spec.primaryUpdateStrategy", CRDDefault: "unsupervised"},
	{Path: "spec.primaryUpdateMethod", CRDDefault: "restart"},
	{Path: "spec.failoverDelay", CRDDefault: 0},
	{Path: "spec.switchoverDelay", CRDDefault: 3600},
	{Path: "spec.stopDelay", CRDDefault: 1800},
	{Path: "spec.smartShutdownTimeout", CRDDefault: 180},
	{Path: "spec.primaryLease.leaseDurationSeconds", CRDDefault: 15},
	{Path: "spec.primaryLease.renewDeadlineSeconds", CRDDefault: 10},
	{Path: "spec.primaryLease.retryPeriodSeconds", CRDDefault: 2},
	{Path: "spec.primaryLease.releasedLeaseDurationSeconds", CRDDefault: 1},
	{Path: "spec.probes.liveness.isolationCheck.enabled", CRDDefault: true},
	{Path: "spec.probes.liveness.isolationCheck.requestTimeout", CRDDefault: 1000},
	{Path: "spec.probes.liveness.isolationCheck.connectionTimeout", CRDDefault: 1000},
	{Path: "spec.postgresql.synchronous.failoverQuorum", Want: true},
}
