package manifests

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// workloadRules: how the apps' pods start, run, stop and are placed.
var workloadRules = []Rule{{
	Name:   "replicas-owned-by-hpa",
	Why:    "an HPA or Flagger sets spec.replicas; a count in Git fights them on every apply",
	Broken: mutate(production, "Deployment", "bank", set("spec.replicas", int64(3))),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			owned := canaryFor(s, d.Name) != nil
			for _, h := range s.kind("HorizontalPodAutoscaler") {
				if n, _, _ := nestedString(h.U.Object, "spec", "scaleTargetRef", "name"); n == d.Name {
					owned = true
				}
			}
			if owned && d.Spec.Replicas != nil {
				r.Add(id("Deployment", d.Namespace, d.Name), "spec.replicas", "set although an HPA or a Canary owns the replica count")
			}
		}
	},
}, {
	Name:   "rolling-update-zero-unavailable",
	Why:    "a rollout must not take a serving pod away before its replacement is ready",
	Broken: mutate(production, "Deployment", "store", set("spec.strategy.rollingUpdate.maxUnavailable", int64(1))),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			ru := d.Spec.Strategy.RollingUpdate
			if d.Spec.Strategy.Type != "RollingUpdate" || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" {
				r.Add(id("Deployment", d.Namespace, d.Name), "spec.strategy", "must be RollingUpdate with maxUnavailable 0")
			}
		}
	},
}, {
	Name:   "startup-probe",
	Why:    "a slow start (migrations waiting for a database that fails over) must not be killed by the liveness probe",
	Broken: mutate(minikube, "Deployment", "store", inContainer(nil, "startupProbe")),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				if c.StartupProbe == nil {
					r.Add(id("Deployment", d.Namespace, d.Name), containerField(false, c.Name, "startupProbe"), "missing")
				}
			}
		}
	},
}, {
	Name:   "readiness-probe-readyz",
	Why:    "/readyz fails while the database is unreachable or the app drains, which takes the pod out of its Service",
	Broken: mutate(minikube, "Deployment", "bank", inContainer("/healthz", "readinessProbe", "httpGet", "path")),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
					r.Add(id("Deployment", d.Namespace, d.Name), containerField(false, c.Name, "readinessProbe.httpGet.path"), "must GET /readyz")
				}
			}
		}
	},
}, {
	Name:   "liveness-probe-healthz",
	Why:    "/healthz touches no dependency: a database outage must not restart every pod",
	Broken: mutate(production, "Deployment", "store", inContainer("/readyz", "livenessProbe", "httpGet", "path")),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
					r.Add(id("Deployment", d.Namespace, d.Name), containerField(false, c.Name, "livenessProbe.httpGet.path"), "must GET /healthz (no dependencies)")
				}
			}
		}
	},
}, {
	Name:   "probe-reaches-listener",
	Why:    "kubelet has no client certificate and speaks the probe's scheme: a probe nothing answers restarts a healthy pod",
	Broken: mutate(e2e, "Deployment", "store", inContainer(int64(9091), "livenessProbe", "httpGet", "port")),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				env := containerEnv(s, c)
				main, admin := listeners(env)
				for i, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
					name := []string{"startupProbe", "readinessProbe", "livenessProbe"}[i]
					if p == nil || p.HTTPGet == nil {
						continue
					}
					port, https := portNumber(c, p.HTTPGet.Port), p.HTTPGet.Scheme == corev1.URISchemeHTTPS
					scheme := map[bool]string{true: "HTTPS", false: "HTTP"}
					bad := ""
					switch {
					case port == 0:
						bad = "which the container does not declare"
					case port == main && env["TLS_CLIENT_CA_FILE"] != "":
						bad = "which requires a client certificate (kubelet has none): probe the ADMIN_ADDR port"
					case port == main && (env["TLS_CERT_FILE"] != "") != https:
						bad = fmt.Sprintf("over %s, but HTTP_ADDR serves %s", scheme[https], scheme[!https])
					case port == admin && https:
						bad = "over HTTPS, but the ADMIN_ADDR listener is plain HTTP"
					case port != main && port != admin:
						bad = "which neither HTTP_ADDR nor ADMIN_ADDR listens on"
					}
					if bad != "" {
						r.Add(id("Deployment", d.Namespace, d.Name), containerField(false, c.Name, name, "httpGet"), "targets port %s, %s", p.HTTPGet.Port.String(), bad)
					}
				}
			}
		}
	},
}, {
	Name:   "restricted-security-context",
	Why:    "Pod Security restricted admits nothing less: no privilege escalation, no capabilities, no root, seccomp on",
	Broken: mutate(minikube, "Job", "bank-seed", inContainer(true, "securityContext", "allowPrivilegeEscalation")),
	Check: func(s *Set, r *Report) {
		for _, t := range sortedTemplates(s) {
			ps := t.t.Spec.SecurityContext
			podSeccomp := ps != nil && ps.SeccompProfile != nil && ps.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
			podNonRoot := ps != nil && ps.RunAsNonRoot != nil && *ps.RunAsNonRoot
			for _, c := range containersOf(t.t) {
				sc := c.SecurityContext
				if sc == nil {
					r.Add(t.id, c.field("securityContext"), "missing")
					continue
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					r.Add(t.id, c.field("securityContext.allowPrivilegeEscalation"), "must be false")
				}
				if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
					r.Add(t.id, c.field("securityContext.capabilities"), "must drop ALL and add none")
				}
				if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
					r.Add(t.id, c.field("securityContext.runAsNonRoot"), "must be true (in the pod's or the container's securityContext)")
				}
				if !podSeccomp && (sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
					r.Add(t.id, c.field("securityContext.seccompProfile"), "must be RuntimeDefault (in the pod's or the container's securityContext)")
				}
			}
		}
	},
}, {
	Name:   "read-only-root-filesystem",
	Why:    "nothing in the image can be changed at run time; the apps write only to the database and an emptyDir",
	Broken: mutate(minikube, "Job", "bank-seed", inContainer(nil, "securityContext", "readOnlyRootFilesystem")),
	Check: func(s *Set, r *Report) {
		for _, t := range sortedTemplates(s) {
			for _, c := range containersOf(t.t) {
				if sc := c.SecurityContext; sc != nil && (sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem) {
					r.Add(t.id, c.field("securityContext.readOnlyRootFilesystem"), "must be true")
				}
			}
		}
	},
}, {
	Name:   "resources-set",
	Why:    "requests let the scheduler place the pod; a memory limit keeps a leak inside it",
	Broken: mutate(production, "Deployment", "bank", inContainer(nil, "resources", "limits", "memory")),
	Check: func(s *Set, r *Report) {
		for _, t := range sortedTemplates(s) {
			for _, c := range containersOf(t.t) {
				if c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					r.Add(t.id, c.field("resources"), "needs cpu and memory requests and a memory limit")
				}
			}
		}
	},
}, {
	Name: "istio-hold-application",
	Why:  "in the mesh every outbound call goes through Envoy: the app must not start before it",
	Broken: mutate(production, "Deployment", "store", annotate("proxy.istio.io/config",
		"holdApplicationUntilProxyStarts: false\nterminationDrainDuration: 35s\n")),
	Check: func(s *Set, r *Report) {
		if !s.Mesh {
			return
		}
		for _, d := range deployments(s, r) {
			cfg, _ := proxyConfig(d.Spec.Template.Annotations)
			if hold, _ := cfg["holdApplicationUntilProxyStarts"].(bool); !hold {
				r.Add(id("Deployment", d.Namespace, d.Name), "spec.template.metadata.annotations[proxy.istio.io/config]", "must set holdApplicationUntilProxyStarts: true")
			}
		}
	},
}, {
	Name: "no-istio-config-without-mesh",
	Why:  "without a mesh there is no Envoy to wait for or to drain, so a budget the annotation states does not exist",
	Broken: mutate(e2e, "Deployment", "store", annotate("proxy.istio.io/config",
		"holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 35s\n")),
	Check: func(s *Set, r *Report) {
		if s.Mesh {
			return
		}
		for _, d := range deployments(s, r) {
			if _, ok := proxyConfig(d.Spec.Template.Annotations); ok {
				r.Add(id("Deployment", d.Namespace, d.Name), "spec.template.metadata.annotations[proxy.istio.io/config]", "set, but there is no mesh")
			}
		}
	},
}, {
	Name:   "grace-period-covers-shutdown",
	Why:    "kubelet kills what still runs when the grace period ends: the drain and in-flight work must finish before",
	Broken: mutate(e2e, "Deployment", "bank", set("spec.template.spec.terminationGracePeriodSeconds", int64(25))),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			grace := gracePeriod(d.Spec.Template.Spec)
			for _, c := range appContainers(d) {
				preStop, drain, timeout := shutdownOf(s, c)
				if grace <= preStop+drain+timeout {
					r.Add(id("Deployment", d.Namespace, d.Name), "spec.template.spec.terminationGracePeriodSeconds", "%v must exceed preStop %v + SHUTDOWN_DRAIN_DELAY %v + SHUTDOWN_TIMEOUT %v", grace, preStop, drain, timeout)
				}
			}
		}
	},
}, {
	Name: "envoy-drains-after-app",
	Why:  "the app's outbound calls go through Envoy, which must outlive its shutdown and still end within the grace period",
	Broken: mutate(production, "Deployment", "store", annotate("proxy.istio.io/config",
		"holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 5s\n")),
	Check: func(s *Set, r *Report) {
		if !s.Mesh {
			return
		}
		for _, d := range deployments(s, r) {
			grace := gracePeriod(d.Spec.Template.Spec)
			cfg, _ := proxyConfig(d.Spec.Template.Annotations)
			var drainDuration time.Duration
			if v, ok := cfg["terminationDrainDuration"].(string); ok {
				drainDuration, _ = time.ParseDuration(v)
			}
			for _, c := range appContainers(d) {
				preStop, drain, timeout := shutdownOf(s, c)
				if need := preStop + drain + timeout; drainDuration <= need || drainDuration >= grace {
					r.Add(id("Deployment", d.Namespace, d.Name), "spec.template.metadata.annotations[proxy.istio.io/config]", "terminationDrainDuration %v must exceed the app's shutdown %v and stay below the grace period %v", drainDuration, need, grace)
				}
			}
		}
	},
}, {
	Name:   "readiness-fails-within-drain",
	Why:    "the pod must leave its endpoints before the app stops serving, or requests still arrive after the drain",
	Broken: mutate(production, "ConfigMap", "bank-config", set("data.SHUTDOWN_DRAIN_DELAY", "1s")),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			for _, c := range appContainers(d) {
				_, drain, _ := shutdownOf(s, c)
				if p := c.ReadinessProbe; p != nil {
					if notReadyAfter := time.Duration(p.PeriodSeconds*p.FailureThreshold) * time.Second; notReadyAfter >= drain {
						r.Add(id("Deployment", d.Namespace, d.Name), containerField(false, c.Name, "readinessProbe"), "periodSeconds x failureThreshold (%v) must be shorter than SHUTDOWN_DRAIN_DELAY %v", notReadyAfter, drain)
					}
				}
			}
		}
	},
}, {
	Name:   "topology-spread",
	Why:    "a lost node or zone must not take every replica with it",
	Broken: mutate(production, "Deployment", "bank", del("spec.template.spec.topologySpreadConstraints")),
	Check: func(s *Set, r *Report) {
		for _, d := range deployments(s, r) {
			keys := map[string]bool{}
			for _, t := range d.Spec.Template.Spec.TopologySpreadConstraints {
				if t.LabelSelector != nil {
					sel, err := metav1.LabelSelectorAsSelector(t.LabelSelector)
					if err == nil && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						keys[t.TopologyKey] = true
					}
				}
			}
			if !keys["kubernetes.io/hostname"] || !keys["topology.kubernetes.io/zone"] {
				r.Add(id("Deployment", d.Namespace, d.Name), "spec.template.spec.topologySpreadConstraints", "must spread its own pods across kubernetes.io/hostname and topology.kubernetes.io/zone")
			}
		}
	},
}, {
	Name:   "pinned-images",
	Why:    "a moving tag deploys what nobody reviewed, and different code on different nodes",
	Broken: mutate(minikube, "Deployment", "store", inContainer("ghcr.io/txmesh/txmesh:latest", "image")),
	Check: func(s *Set, r *Report) {
		for _, t := range sortedTemplates(s) {
			for _, c := range containersOf(t.t) {
				img := c.Image
				name := img[strings.LastIndex(img, "/")+1:]
				if !strings.Contains(img, "@sha256:") && (!strings.Contains(name, ":") || strings.HasSuffix(name, ":latest")) {
					r.Add(t.id, c.field("image"), "%q is not pinned to a tag or digest", img)
				}
			}
		}
		for _, o := range s.kind("Cluster") {
			if img, _, _ := nestedString(o.U.Object, "spec", "imageName"); img != "" && !strings.Contains(img[strings.LastIndex(img, "/")+1:], ":") {
				r.Add(o.ID(), "spec.imageName", "%q is not pinned", img)
			}
		}
	},
}, {
	Name:   "no-pull-always",
	Why:    "tags are pinned: Always costs a registry round trip per pod start and turns a registry outage into a restart outage",
	Broken: mutate(production, "Deployment", "store", inContainer("Always", "imagePullPolicy")),
	Check: func(s *Set, r *Report) {
		eachImage(s, func(obj, field, _, policy string) {
			if policy == string(corev1.PullAlways) {
				r.Add(obj, field, "Always (tags are pinned; use IfNotPresent)")
			}
		})
	},
}, {
	Name:   "imported-image-not-pulled",
	Why:    "an image imported into the nodes has nowhere to be pulled from; the default policy pulls if a tag becomes :latest",
	Broken: mutate(e2e, "Job", "bank-seed", inContainer(nil, "imagePullPolicy")),
	Check: func(s *Set, r *Report) {
		eachImage(s, func(obj, field, img, policy string) {
			if localImage(img) && policy != string(corev1.PullAlways) && policy != string(corev1.PullIfNotPresent) && policy != string(corev1.PullNever) {
				r.Add(obj, field, "image %q is imported into the nodes, not pullable: must be IfNotPresent or Never, not %q", img, policy)
			}
		})
	},
}, {
	Name:   "memory-budget",
	Why:    "the memory limits of everything the set runs, at minimum replicas, must fit the cluster it is made for",
	Broken: mutate(e2e, "Cluster", "store-db", set("spec.resources.limits.memory", "1Gi")),
	Check: func(s *Set, r *Report) {
		if s.MemoryBudget == "" {
			return
		}
		// Limits, not requests: within the budget, the set cannot overcommit the cluster's memory as a whole.
		budget := resource.MustParse(s.MemoryBudget)
		var parts []string
		var total int64
		count := func(what string, n int64, each resource.Quantity) {
			total += n * each.Value()
			parts = append(parts, fmt.Sprintf("%s %dx%s", what, n, each.String()))
		}
		for _, t := range sortedTemplates(s) {
			n := int64(1)
			for _, o := range s.Objects {
				if o.ID() != t.id {
					continue
				}
				if v, ok, _ := unstructured.NestedInt64(o.U.Object, "spec", "replicas"); ok {
					n = v
				}
				for _, h := range s.kind("HorizontalPodAutoscaler") {
					if name, _, _ := nestedString(h.U.Object, "spec", "scaleTargetRef", "name"); name == o.U.GetName() && o.U.GetKind() == "Deployment" {
						n, _, _ = unstructured.NestedInt64(h.U.Object, "spec", "minReplicas")
					}
				}
			}
			// Init containers run before the others, one at a time: a pod needs the larger of the two.
			pod, inits := resource.Quantity{}, resource.Quantity{}
			for _, c := range t.t.Spec.Containers {
				pod.Add(*c.Resources.Limits.Memory())
			}
			for _, c := range t.t.Spec.InitContainers {
				if m := c.Resources.Limits.Memory(); m.Cmp(inits) > 0 {
					inits = *m
				}
			}
			if inits.Cmp(pod) > 0 {
				pod = inits
			}
			count(t.id, n, pod)
		}
		for _, o := range s.kind("Cluster") {
			n, _, _ := unstructured.NestedInt64(o.U.Object, "spec", "instances")
			limit, _, _ := nestedString(o.U.Object, "spec", "resources", "limits", "memory")
			q, err := resource.ParseQuantity(limit)
			if err != nil {
				r.Add(o.ID(), "spec.resources.limits.memory", "missing: the memory budget needs every limit")
				continue
			}
			count(o.ID(), n, q)
			// The Barman Cloud plugin injects its sidecar into every instance, with its ObjectStore's resources.
			plugins, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "plugins")
			for _, p := range plugins {
				store, _, _ := unstructured.NestedString(p.(map[string]any), "parameters", "barmanObjectName")
				if store == "" {
					continue
				}
				var limit string
				found := false
				for _, st := range s.kind("ObjectStore") {
					if st.U.GetName() == store {
						found = true
						limit, _, _ = nestedString(st.U.Object, "spec", "instanceSidecarConfiguration", "resources", "limits", "memory")
					}
				}
				if !found {
					continue // the ObjectStore lives elsewhere; another rule names what is missing
				}
				q, err := resource.ParseQuantity(limit)
				if err != nil {
					r.Add("ObjectStore/"+store, "spec.instanceSidecarConfiguration.resources.limits.memory", "missing: the memory budget needs the sidecar's limit (it runs in each of %s's %d instances)", o.U.GetName(), n)
					continue
				}
				count(o.ID()+" sidecar", n, q)
			}
		}
		if total > budget.Value() {
			sort.Strings(parts)
			r.Add("the set "+s.Name, "resources.limits.memory", "limits at minimum replicas total %s, over the budget %s (%s)", resource.NewQuantity(total, resource.BinarySI), budget.String(), strings.Join(parts, ", "))
		}
	},
}}

// proxyConfig parses a pod template's proxy.istio.io/config annotation (ok: the annotation is there).
func proxyConfig(annotations map[string]string) (cfg map[string]any, ok bool) {
	raw, ok := annotations["proxy.istio.io/config"]
	cfg = map[string]any{}
	_ = yaml.Unmarshal([]byte(raw), &cfg)
	return cfg, ok
}

func gracePeriod(spec corev1.PodSpec) time.Duration {
	if spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// shutdownOf returns a container's preStop sleep and the app's SHUTDOWN_DRAIN_DELAY and SHUTDOWN_TIMEOUT.
func shutdownOf(s *Set, c corev1.Container) (preStop, drain, timeout time.Duration) {
	env := containerEnv(s, c)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	return preStop, duration(env, "SHUTDOWN_DRAIN_DELAY", 5*time.Second), duration(env, "SHUTDOWN_TIMEOUT", 20*time.Second)
}

// eachImage calls f with every image of the set and its pull policy: the pod templates' containers and the
// CloudNativePG Clusters' operand.
func eachImage(s *Set, f func(obj, field, image, policy string)) {
	for _, t := range sortedTemplates(s) {
		for _, c := range containersOf(t.t) {
			f(t.id, c.field("imagePullPolicy"), c.Image, string(c.ImagePullPolicy))
		}
	}
	for _, o := range s.kind("Cluster") {
		img, _, _ := nestedString(o.U.Object, "spec", "imageName")
		policy, _, _ := nestedString(o.U.Object, "spec", "imagePullPolicy")
		f(o.ID(), "spec.imagePullPolicy", img, policy)
	}
}
