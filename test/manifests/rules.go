package manifests

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Set is a group of rendered objects that are applied together, with what the rules need to know about where.
type Set struct {
	Name    string
	Objects []Object
	Environment
}

// Environment is what the rules need to know about where a set is deployed.
type Environment struct {
	Production bool // backups, WAL archiving, no fault injection
	// Mesh: the workloads run with Istio sidecars (mTLS, Envoy draining on shutdown, database pods kept out of
	// the mesh). Without it (e2e) the apps terminate mTLS themselves and no Istio-only setting applies.
	Mesh bool
	// MinNodes is how many nodes the environment guarantees: with one per database instance, two instances
	// sharing a node is a choice, not a necessity, so anti-affinity must be required.
	MinNodes int
	// CRDGroups: the API groups whose CRDs the cluster has before this set is applied (nil: not checked).
	CRDGroups []string
	// MemoryBudget: what the memory limits of everything the set runs, at minimum replicas, must fit in.
	MemoryBudget string
	// NoConfigs: the Flux tree has no infra-configs layer (apps depend on infra-controllers), because the
	// cluster lacks the CRDs that layer's objects need (make e2e: no Istio).
	NoConfigs bool
}

// Environments by overlay (and Flux cluster) name; every overlay must have an entry.
var Environments = map[string]Environment{
	"minikube":   {Mesh: true, MinNodes: 1},
	"production": {Production: true, Mesh: true, MinNodes: 3},
	"e2e":        e2eEnvironment,
	// make e2e's CD block: the e2e overlay with Flagger's Canaries (kubernetes provider), applied by Flux.
	"e2e-cd": e2eEnvironment,
	// kind on a GitHub runner (.github/workflows/e2e.yml): e2e's overlay, its images pulled from a registry.
	"kind": {MinNodes: 3, CRDGroups: []string{"postgresql.cnpg.io"}},
}

var e2eEnvironment = Environment{MinNodes: 3, CRDGroups: []string{"postgresql.cnpg.io", "source.toolkit.fluxcd.io",
	"kustomize.toolkit.fluxcd.io", "image.toolkit.fluxcd.io", "flagger.app"}, MemoryBudget: "4Gi", NoConfigs: true}

// EnvironmentOf returns the Environment of an overlay or Flux cluster directory (by its last element).
func EnvironmentOf(dir string) (Environment, error) {
	e, ok := Environments[path.Base(dir)]
	if !ok {
		return Environment{}, fmt.Errorf("%s: no entry in Environments (rules.go): say whether it runs in the mesh and on how many nodes", dir)
	}
	return e, nil
}

// Rule is one house rule: ID is quoted in every finding so the broken-fixture table can expect it.
type Rule struct {
	ID    string
	Check func(s *Set) []string
}

func (s *Set) kind(kind string) []Object {
	var out []Object
	for _, o := range s.Objects {
		if o.U.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func (s *Set) find(kind, ns, name string) *Object {
	for _, o := range s.Objects {
		if o.U.GetKind() == kind && o.U.GetName() == name && (ns == "" || o.U.GetNamespace() == ns) {
			return &o
		}
	}
	return nil
}

func nestedString(m map[string]any, path ...string) (string, bool, error) {
	return unstructured.NestedString(m, path...)
}

func toTyped[T any](o Object) (*T, error) {
	v, err := Decode(o)
	if err != nil {
		return nil, err
	}
	t, ok := v.(*T)
	if !ok {
		return nil, fmt.Errorf("%s: unexpected type %T", o.ID(), v)
	}
	return t, nil
}

func deployments(s *Set) ([]*appsv1.Deployment, []string) {
	var out []*appsv1.Deployment
	var errs []string
	for _, o := range s.kind("Deployment") {
		d, err := toTyped[appsv1.Deployment](o)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, d)
	}
	return out, errs
}

func canaries(s *Set) []*flaggerv1.Canary {
	var out []*flaggerv1.Canary
	for _, o := range s.kind("Canary") {
		if c, err := toTyped[flaggerv1.Canary](o); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// podTemplates of Deployments and Jobs, with the owner's ID.
func podTemplates(s *Set) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range s.Objects {
		switch o.U.GetKind() {
		case "Deployment":
			if d, err := toTyped[appsv1.Deployment](o); err == nil {
				out[o.ID()] = &d.Spec.Template
			}
		case "Job":
			var spec struct {
				Spec struct {
					Template corev1.PodTemplateSpec `json:"template"`
				} `json:"spec"`
			}
			if b, err := yaml.Marshal(o.U.Object); err == nil && yaml.Unmarshal(b, &spec) == nil {
				t := spec.Spec.Template
				out[o.ID()] = &t
			}
		}
	}
	return out
}

// canaryFor returns the Canary targeting a Deployment name, if any.
func canaryFor(s *Set, name string) *flaggerv1.Canary {
	for _, c := range canaries(s) {
		if c.Spec.TargetRef.Kind == "Deployment" && c.Spec.TargetRef.Name == name {
			return c
		}
	}
	return nil
}

// servingLabelSets: the label sets of the pods that actually run for a Deployment: its template labels and,
// with a Canary, Flagger's primary copy (selector label value + "-primary").
func servingLabelSets(s *Set, d *appsv1.Deployment) []labels.Set {
	out := []labels.Set{labels.Set(d.Spec.Template.Labels)}
	if canaryFor(s, d.Name) != nil {
		primary := labels.Set{}
		for k, v := range d.Spec.Template.Labels {
			primary[k] = v
		}
		if v, ok := d.Spec.Selector.MatchLabels["app"]; ok {
			primary["app"] = v + "-primary"
		}
		out = append(out, primary)
	}
	return out
}

func containerEnv(s *Set, c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		if cm := s.find("ConfigMap", "", ef.ConfigMapRef.Name); cm != nil {
			data, _, _ := unstructured.NestedStringMap(cm.U.Object, "data")
			for k, v := range data {
				env[k] = v
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

func duration(env map[string]string, key string, def time.Duration) time.Duration {
	if v, ok := env[key]; ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func appContainers(d *appsv1.Deployment) []corev1.Container { return d.Spec.Template.Spec.Containers }

// listeners returns the ports of HTTP_ADDR (default :8080) and ADMIN_ADDR (0 when unset) in env.
func listeners(env map[string]string) (main, admin int32) {
	port := func(addr string) int32 {
		_, p, err := net.SplitHostPort(addr)
		n, err2 := strconv.ParseInt(p, 10, 32)
		if err != nil || err2 != nil {
			return -1
		}
		return int32(n)
	}
	main = 8080
	if v, ok := env["HTTP_ADDR"]; ok {
		main = port(v)
	}
	if v, ok := env["ADMIN_ADDR"]; ok {
		admin = port(v)
	}
	return main, admin
}

// portNumber resolves a port given by number or by the name of one of c's ports (0: no such port).
func portNumber(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// tlsFiles are the settings that name certificate and key files.
var tlsFiles = []string{"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE", "BANK_CA_FILE", "BANK_CLIENT_CERT_FILE", "BANK_CLIENT_KEY_FILE"}

// secretFile reports whether path is a key of a Secret volume that c mounts read-only.
func secretFile(t *corev1.PodTemplateSpec, c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || !m.ReadOnly || m.SubPath != "" {
			continue
		}
		for _, v := range t.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			if len(v.Secret.Items) == 0 {
				return !strings.Contains(rel, "/")
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					return true
				}
			}
		}
	}
	return false
}

// servedBy reports whether the Service named svc (or, under a Canary, Flagger's Service of that name) sends
// traffic to d's pods.
func servedBy(s *Set, svc string, d *appsv1.Deployment) bool {
	if o := s.find("Service", "", svc); o != nil {
		sel, _, _ := unstructured.NestedStringMap(o.U.Object, "spec", "selector")
		for _, ls := range servingLabelSets(s, d) {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(ls) {
				return true
			}
		}
		return false
	}
	return canaryFor(s, d.Name) != nil && d.Name == svc
}

// localImage: the image's registry is a .local name, i.e. the image is imported into each node's runtime
// and cannot be pulled.
func localImage(img string) bool {
	host, _, found := strings.Cut(img, "/")
	return found && strings.HasSuffix(strings.Split(host, ":")[0], ".local")
}

// AppRules run over each kustomize overlay's output (and again over each cluster's union).
var AppRules = []Rule{
	{"replicas-owned-by-hpa", func(s *Set) []string {
		ds, errs := deployments(s)
		for _, d := range ds {
			owned := canaryFor(s, d.Name) != nil
			for _, h := range s.kind("HorizontalPodAutoscaler") {
				if n, _, _ := nestedString(h.U.Object, "spec", "scaleTargetRef", "name"); n == d.Name {
					owned = true
				}
			}
			if owned && d.Spec.Replicas != nil {
				errs = append(errs, fmt.Sprintf("[replicas-owned-by-hpa] Deployment %s sets replicas although an HPA/Canary owns them", d.Name))
			}
		}
		return errs
	}},
	{"rolling-update-zero-unavailable", func(s *Set) []string {
		ds, errs := deployments(s)
		for _, d := range ds {
			ru := d.Spec.Strategy.RollingUpdate
			if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" {
				errs = append(errs, fmt.Sprintf("[rolling-update-zero-unavailable] Deployment %s must use RollingUpdate with maxUnavailable 0", d.Name))
			}
		}
		return errs
	}},
	{"probes", func(s *Set) []string {
		ds, errs := deployments(s)
		for _, d := range ds {
			for _, c := range appContainers(d) {
				switch {
				case c.StartupProbe == nil:
					errs = append(errs, fmt.Sprintf("[probes] %s/%s has no startupProbe", d.Name, c.Name))
				case c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz":
					errs = append(errs, fmt.Sprintf("[probes] %s/%s readinessProbe must GET /readyz", d.Name, c.Name))
				case c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz":
					errs = append(errs, fmt.Sprintf("[probes] %s/%s livenessProbe must GET /healthz (no dependencies)", d.Name, c.Name))
				}
				// Each probe must reach a listener that answers kubelet, which presents no client certificate.
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
						errs = append(errs, fmt.Sprintf("[probes] %s/%s %s targets port %s, %s", d.Name, c.Name, name, p.HTTPGet.Port.String(), bad))
					}
				}
			}
		}
		return errs
	}},
	{"restricted-security-context", func(s *Set) []string {
		var errs []string
		for id, t := range podTemplates(s) {
			ps := t.Spec.SecurityContext
			podSeccomp := ps != nil && ps.SeccompProfile != nil && ps.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
			podNonRoot := ps != nil && ps.RunAsNonRoot != nil && *ps.RunAsNonRoot
			for _, c := range append(append([]corev1.Container{}, t.Spec.InitContainers...), t.Spec.Containers...) {
				sc := c.SecurityContext
				bad := []string{}
				if sc == nil {
					bad = append(bad, "no securityContext")
				} else {
					if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
						bad = append(bad, "allowPrivilegeEscalation must be false")
					}
					if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
						bad = append(bad, "readOnlyRootFilesystem must be true")
					}
					if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
						bad = append(bad, "capabilities must drop ALL and add none")
					}
					if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
						bad = append(bad, "runAsNonRoot must be true")
					}
					if !podSeccomp && (sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
						bad = append(bad, "seccompProfile must be RuntimeDefault")
					}
				}
				for _, b := range bad {
					errs = append(errs, fmt.Sprintf("[restricted-security-context] %s container %s: %s", id, c.Name, b))
				}
				if c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					errs = append(errs, fmt.Sprintf("[restricted-security-context] %s container %s: needs cpu/memory requests and a memory limit", id, c.Name))
				}
			}
		}
		return errs
	}},
	{"shutdown-budget", func(s *Set) []string {
		ds, errs := deployments(s)
		for _, d := range ds {
			spec := d.Spec.Template.Spec
			grace := time.Duration(30) * time.Second
			if spec.TerminationGracePeriodSeconds != nil {
				grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
			}
			var drainDuration time.Duration
			proxyConfig, hasProxyConfig := d.Spec.Template.Annotations["proxy.istio.io/config"]
			cfg := map[string]any{}
			_ = yaml.Unmarshal([]byte(proxyConfig), &cfg)
			if v, ok := cfg["terminationDrainDuration"].(string); ok {
				drainDuration, _ = time.ParseDuration(v)
			}
			switch hold, _ := cfg["holdApplicationUntilProxyStarts"].(bool); {
			case s.Mesh && !hold:
				errs = append(errs, fmt.Sprintf("[shutdown-budget] %s: proxy.istio.io/config must set holdApplicationUntilProxyStarts: true", d.Name))
			case !s.Mesh && hasProxyConfig:
				errs = append(errs, fmt.Sprintf("[shutdown-budget] %s: proxy.istio.io/config without a mesh: there is no Envoy to wait for or to drain, so the drain budget it states does not exist", d.Name))
			}
			for _, c := range appContainers(d) {
				env := containerEnv(s, c)
				var preStop time.Duration
				if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
					preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
				}
				drain := duration(env, "SHUTDOWN_DRAIN_DELAY", 5*time.Second)
				timeout := duration(env, "SHUTDOWN_TIMEOUT", 20*time.Second)
				need := preStop + drain + timeout
				if grace <= need {
					errs = append(errs, fmt.Sprintf("[shutdown-budget] %s: terminationGracePeriodSeconds %v must exceed preStop %v + SHUTDOWN_DRAIN_DELAY %v + SHUTDOWN_TIMEOUT %v", d.Name, grace, preStop, drain, timeout))
				}
				if s.Mesh && (drainDuration <= need || drainDuration >= grace) {
					errs = append(errs, fmt.Sprintf("[shutdown-budget] %s: Istio terminationDrainDuration %v must exceed the app's shutdown %v (outbound calls go through Envoy) and stay below the grace period %v", d.Name, drainDuration, need, grace))
				}
				if p := c.ReadinessProbe; p != nil {
					notReadyAfter := time.Duration(p.PeriodSeconds*p.FailureThreshold) * time.Second
					if notReadyAfter >= drain {
						errs = append(errs, fmt.Sprintf("[shutdown-budget] %s: readiness period x failureThreshold (%v) must be shorter than SHUTDOWN_DRAIN_DELAY %v, or traffic still arrives after draining", d.Name, notReadyAfter, drain))
					}
				}
			}
		}
		return errs
	}},
	{"app-mtls", func(s *Set) []string {
		// In the mesh Envoy does mTLS and must see plain HTTP to route it (retries, timeouts, fault injection);
		// without it nothing else encrypts or authenticates, so each app serves TLS, requires client
		// certificates, and the Store presents one to the Bank.
		ds, errs := deployments(s)
		bad := func(d *appsv1.Deployment, c corev1.Container, format string, a ...any) {
			errs = append(errs, fmt.Sprintf("[app-mtls] %s/%s: ", d.Name, c.Name)+fmt.Sprintf(format, a...))
		}
		for _, d := range ds {
			for _, c := range appContainers(d) {
				env := containerEnv(s, c)
				serving := env["TLS_CERT_FILE"] != ""
				switch {
				case !s.Mesh && (!serving || env["TLS_KEY_FILE"] == "" || env["TLS_CLIENT_CA_FILE"] == ""):
					bad(d, c, "without the mesh the app must serve TLS and require client certificates (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE)")
				case s.Mesh && serving:
					bad(d, c, "in the mesh the app serves plain HTTP: Envoy does mTLS and routes by HTTP")
				}
				for _, k := range tlsFiles {
					if f := env[k]; f != "" && !secretFile(&d.Spec.Template, c, f) {
						bad(d, c, "%s %s is not a key of a Secret volume mounted read-only", k, f)
					}
				}
				main, admin := listeners(env)
				if admin != 0 && portNumber(c, intstr.FromString("admin")) != admin {
					bad(d, c, "ADMIN_ADDR listens on %d, which needs a container port named admin", admin)
				}
				if p := d.Spec.Template.Annotations["prometheus.io/port"]; env["TLS_CLIENT_CA_FILE"] != "" && p == strconv.Itoa(int(main)) {
					bad(d, c, "prometheus.io/port %s requires a client certificate; scrape the ADMIN_ADDR port", p)
				}
				raw, ok := env["BANK_URL"]
				if !ok {
					continue
				}
				u, err := url.Parse(raw)
				if err != nil {
					bad(d, c, "BANK_URL %q: %v", raw, err)
					continue
				}
				for _, bank := range ds {
					if !servedBy(s, strings.Split(u.Hostname(), ".")[0], bank) {
						continue
					}
					for _, bc := range appContainers(bank) {
						benv := containerEnv(s, bc)
						switch {
						case benv["TLS_CERT_FILE"] != "" && (u.Scheme != "https" || env["BANK_CA_FILE"] == ""):
							bad(d, c, "%s serves TLS: BANK_URL must be https and BANK_CA_FILE set", bank.Name)
						case benv["TLS_CERT_FILE"] == "" && u.Scheme != "http":
							bad(d, c, "%s serves plain HTTP: BANK_URL must be http", bank.Name)
						}
						if benv["TLS_CLIENT_CA_FILE"] != "" && (env["BANK_CLIENT_CERT_FILE"] == "" || env["BANK_CLIENT_KEY_FILE"] == "") {
							bad(d, c, "%s requires a client certificate: set BANK_CLIENT_CERT_FILE and BANK_CLIENT_KEY_FILE", bank.Name)
						}
					}
				}
			}
		}
		return errs
	}},
	{"meshless-namespace", func(s *Set) []string {
		// Without the mesh nothing else creates the namespace (mesh/ does, with injection on), so the set does:
		// Pod Security restricted in every mode with its version stated, and nothing asking Istio to inject.
		if s.Mesh {
			return nil
		}
		var errs []string
		var used []string
		for _, o := range s.Objects {
			if ns := o.U.GetNamespace(); ns != "" && !slices.Contains(used, ns) {
				used = append(used, ns)
			}
		}
		for _, ns := range used {
			o := s.find("Namespace", "", ns)
			if o == nil {
				errs = append(errs, fmt.Sprintf("[meshless-namespace] namespace %s is used but not created by the set", ns))
				continue
			}
			l := o.U.GetLabels()
			for _, mode := range []string{"enforce", "audit", "warn"} {
				key := "pod-security.kubernetes.io/" + mode
				if l[key] != "restricted" {
					errs = append(errs, fmt.Sprintf("[meshless-namespace] %s: %s must be restricted, not %q", o.ID(), key, l[key]))
				}
				if v := l[key+"-version"]; v != "latest" && !psaVersion.MatchString(v) {
					errs = append(errs, fmt.Sprintf("[meshless-namespace] %s: %s-version must name the policy version (v1.N, or latest), not %q", o.ID(), key, v))
				}
			}
			if v, ok := l["istio-injection"]; (ok && v != "disabled") || l["istio.io/rev"] != "" {
				errs = append(errs, fmt.Sprintf("[meshless-namespace] %s asks Istio to inject sidecars, but there is no mesh", o.ID()))
			}
		}
		return errs
	}},
	{"installed-crds", func(s *Set) []string {
		// A kind whose CRD the cluster lacks fails the whole apply (no Istio or Prometheus Operator in the e2e
		// cluster).
		if s.CRDGroups == nil {
			return nil
		}
		var errs []string
		for _, o := range s.Objects {
			if g := o.GVK().Group; isCustom(o) && !slices.Contains(s.CRDGroups, g) {
				errs = append(errs, fmt.Sprintf("[installed-crds] %s: no CRD for %s in this cluster (installed: %s)", o.ID(), o.GVK().GroupKind(), strings.Join(s.CRDGroups, ", ")))
			}
		}
		return errs
	}},
	{"memory-budget", func(s *Set) []string {
		if s.MemoryBudget == "" {
			return nil
		}
		// Limits, not requests: within the budget, the set cannot overcommit the cluster's memory as a whole.
		budget := resource.MustParse(s.MemoryBudget)
		var errs, parts []string
		var total int64
		add := func(what string, n int64, each resource.Quantity) {
			total += n * each.Value()
			parts = append(parts, fmt.Sprintf("%s %dx%s", what, n, each.String()))
		}
		for id, t := range podTemplates(s) {
			n := int64(1)
			for _, o := range s.Objects {
				if o.ID() != id {
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
			for _, c := range t.Spec.Containers {
				pod.Add(*c.Resources.Limits.Memory())
			}
			for _, c := range t.Spec.InitContainers {
				if m := c.Resources.Limits.Memory(); m.Cmp(inits) > 0 {
					inits = *m
				}
			}
			if inits.Cmp(pod) > 0 {
				pod = inits
			}
			add(id, n, pod)
		}
		for _, o := range s.kind("Cluster") {
			n, _, _ := unstructured.NestedInt64(o.U.Object, "spec", "instances")
			limit, _, _ := nestedString(o.U.Object, "spec", "resources", "limits", "memory")
			q, err := resource.ParseQuantity(limit)
			if err != nil {
				errs = append(errs, fmt.Sprintf("[memory-budget] %s: needs a memory limit", o.ID()))
				continue
			}
			add(o.ID(), n, q)
		}
		if total > budget.Value() {
			sort.Strings(parts)
			errs = append(errs, fmt.Sprintf("[memory-budget] memory limits at minimum replicas total %s, over the budget %s (%s)", resource.NewQuantity(total, resource.BinarySI), budget.String(), strings.Join(parts, ", ")))
		}
		return errs
	}},
	{"topology-spread", func(s *Set) []string {
		ds, errs := deployments(s)
		for _, d := range ds {
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
				errs = append(errs, fmt.Sprintf("[topology-spread] Deployment %s must spread its own pods across kubernetes.io/hostname and topology.kubernetes.io/zone", d.Name))
			}
		}
		return errs
	}},
	{"pinned-images", func(s *Set) []string {
		var errs []string
		for id, t := range podTemplates(s) {
			for _, c := range append(append([]corev1.Container{}, t.Spec.InitContainers...), t.Spec.Containers...) {
				img := c.Image
				name := img[strings.LastIndex(img, "/")+1:]
				if !strings.Contains(img, "@sha256:") && (!strings.Contains(name, ":") || strings.HasSuffix(name, ":latest")) {
					errs = append(errs, fmt.Sprintf("[pinned-images] %s container %s: image %q is not pinned to a tag or digest", id, c.Name, img))
				}
			}
		}
		for _, o := range s.kind("Cluster") {
			if img, _, _ := nestedString(o.U.Object, "spec", "imageName"); img != "" && !strings.Contains(img[strings.LastIndex(img, "/")+1:], ":") {
				errs = append(errs, fmt.Sprintf("[pinned-images] %s: imageName %q is not pinned", o.ID(), img))
			}
		}
		return errs
	}},
	{"image-pull-policy", func(s *Set) []string {
		// Tags are pinned (pinned-images), so Always buys nothing but a registry round trip per pod start, and a
		// registry outage becomes a restart outage. An image that is only imported into the nodes (a .local
		// registry: nowhere to pull from) states IfNotPresent or Never itself, because the default turns into
		// Always if a tag override ever makes it :latest.
		var errs []string
		check := func(what, img, policy string) {
			switch {
			case policy == string(corev1.PullAlways):
				errs = append(errs, fmt.Sprintf("[image-pull-policy] %s: imagePullPolicy Always (tags are pinned; use IfNotPresent)", what))
			case localImage(img) && policy != string(corev1.PullIfNotPresent) && policy != string(corev1.PullNever):
				errs = append(errs, fmt.Sprintf("[image-pull-policy] %s: image %q is imported into the nodes, not pullable; imagePullPolicy must be IfNotPresent or Never, not %q", what, img, policy))
			}
		}
		for id, t := range podTemplates(s) {
			for _, c := range append(append([]corev1.Container{}, t.Spec.InitContainers...), t.Spec.Containers...) {
				check(id+" container "+c.Name, c.Image, string(c.ImagePullPolicy))
			}
		}
		for _, o := range s.kind("Cluster") {
			img, _, _ := nestedString(o.U.Object, "spec", "imageName")
			policy, _, _ := nestedString(o.U.Object, "spec", "imagePullPolicy")
			check(o.ID(), img, policy)
		}
		return errs
	}},
	{"references-resolve", func(s *Set) []string {
		ds, errs := deployments(s)
		byName := map[string]*appsv1.Deployment{}
		for _, d := range ds {
			byName[d.Name] = d
		}
		for _, h := range s.kind("HorizontalPodAutoscaler") {
			kind, _, _ := nestedString(h.U.Object, "spec", "scaleTargetRef", "kind")
			n, _, _ := nestedString(h.U.Object, "spec", "scaleTargetRef", "name")
			if kind != "Deployment" || byName[n] == nil {
				errs = append(errs, fmt.Sprintf("[references-resolve] %s targets %s %s, which is not rendered", h.ID(), kind, n))
			}
		}
		for _, c := range canaries(s) {
			if byName[c.Spec.TargetRef.Name] == nil {
				errs = append(errs, fmt.Sprintf("[references-resolve] Canary %s targets Deployment %s, which is not rendered", c.Name, c.Spec.TargetRef.Name))
			}
			if r := c.Spec.AutoscalerRef; r != nil && s.find("HorizontalPodAutoscaler", "", r.Name) == nil {
				errs = append(errs, fmt.Sprintf("[references-resolve] Canary %s autoscalerRef %s is not rendered", c.Name, r.Name))
			}
		}
		for _, p := range s.kind("PodDisruptionBudget") {
			sel := &metav1.LabelSelector{}
			if b, err := yaml.Marshal(p.U.Object["spec"].(map[string]any)["selector"]); err == nil {
				_ = yaml.Unmarshal(b, sel)
			}
			selector, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil {
				errs = append(errs, fmt.Sprintf("[references-resolve] %s: %v", p.ID(), err))
				continue
			}
			matched := false
			for _, d := range ds {
				sets := servingLabelSets(s, d)
				all := len(sets) > 0
				any := false
				for _, ls := range sets {
					if selector.Matches(ls) {
						any = true
					} else {
						all = false
					}
				}
				if any && !all {
					errs = append(errs, fmt.Sprintf("[references-resolve] %s selects some but not all serving pods of %s (Flagger's -primary pods included)", p.ID(), d.Name))
				}
				matched = matched || any
			}
			if !matched {
				errs = append(errs, fmt.Sprintf("[references-resolve] %s selects no running pods", p.ID()))
			}
		}
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
				errs = append(errs, fmt.Sprintf("[references-resolve] %s selects no pods", svc.ID()))
			}
		}
		clusters := map[string]bool{}
		for _, c := range s.kind("Cluster") {
			clusters[c.U.GetName()] = true
		}
		for id, t := range podTemplates(s) {
			for _, c := range append(append([]corev1.Container{}, t.Spec.InitContainers...), t.Spec.Containers...) {
				for _, e := range c.Env {
					if e.Name != "DATABASE_URL" {
						continue
					}
					ref := e.ValueFrom
					if ref == nil || ref.SecretKeyRef == nil || !strings.HasSuffix(ref.SecretKeyRef.Name, "-app") || ref.SecretKeyRef.Key != "uri" || !clusters[strings.TrimSuffix(ref.SecretKeyRef.Name, "-app")] {
						errs = append(errs, fmt.Sprintf("[references-resolve] %s container %s: DATABASE_URL must come from secret <cluster>-app key uri of a rendered CloudNativePG Cluster", id, c.Name))
					}
				}
			}
		}
		return errs
	}},
	{"flagger-owns-routing", func(s *Set) []string {
		var errs []string
		cs := canaries(s)
		owned := map[string]string{}
		for _, c := range cs {
			for _, n := range []string{c.Spec.TargetRef.Name, c.Spec.TargetRef.Name + "-primary", c.Spec.TargetRef.Name + "-canary"} {
				owned[n] = c.Name
			}
			if c.Spec.Service.Delegation {
				if len(c.Spec.Service.Hosts) > 0 || len(c.Spec.Service.Gateways) > 0 {
					errs = append(errs, fmt.Sprintf("[flagger-owns-routing] Canary %s: delegation needs empty service.hosts and service.gateways (Flagger refuses otherwise)", c.Name))
				}
				found := false
				for _, vs := range s.kind("VirtualService") {
					routes, _, _ := unstructured.NestedSlice(vs.U.Object, "spec", "http")
					for _, r := range routes {
						rm, _ := r.(map[string]any)
						if n, _, _ := unstructured.NestedString(rm, "delegate", "name"); n == c.Name {
							found = true
							if _, hasRoute := rm["route"]; hasRoute {
								errs = append(errs, fmt.Sprintf("[flagger-owns-routing] %s: a route with delegate must not have route", vs.ID()))
							}
						}
					}
				}
				if !found {
					errs = append(errs, fmt.Sprintf("[flagger-owns-routing] Canary %s uses delegation but no root VirtualService delegates to it: the canary would get no traffic", c.Name))
				}
			}
		}
		for _, kind := range []string{"Service", "VirtualService", "DestinationRule"} {
			for _, o := range s.kind(kind) {
				if c, ok := owned[o.U.GetName()]; ok {
					errs = append(errs, fmt.Sprintf("[flagger-owns-routing] %s is generated by Flagger for Canary %s; a hand-written one would fight it", o.ID(), c))
				}
			}
		}
		hosts := map[string][]string{}
		for _, vs := range s.kind("VirtualService") {
			hs, _, _ := unstructured.NestedStringSlice(vs.U.Object, "spec", "hosts")
			mine := map[string]bool{}
			for _, h := range hs {
				mine[strings.SplitN(h, ".", 2)[0]] = true
			}
			for short := range mine {
				hosts[short] = append(hosts[short], vs.ID())
			}
		}
		for h, vss := range hosts {
			if len(vss) > 1 {
				errs = append(errs, fmt.Sprintf("[flagger-owns-routing] host %s is claimed by several VirtualServices %v (Istio merges them unpredictably)", h, vss))
			}
		}
		return errs
	}},
	{"cnpg-ha", func(s *Set) []string {
		var errs []string
		for _, o := range s.kind("Cluster") {
			m := o.U.Object
			bad := func(msg string) { errs = append(errs, fmt.Sprintf("[cnpg-ha] %s: %s", o.ID(), msg)) }
			if n, _, _ := unstructured.NestedInt64(m, "spec", "instances"); n < 3 {
				bad("needs 3 instances")
			}
			sync, _, _ := unstructured.NestedMap(m, "spec", "postgresql", "synchronous")
			if sync["method"] != "any" || sync["dataDurability"] != "required" || sync["failoverQuorum"] != true {
				bad("postgresql.synchronous must be method any, dataDurability required, failoverQuorum true")
			}
			if n, ok := sync["number"].(int64); !ok || n < 1 {
				bad("postgresql.synchronous.number must be >= 1")
			}
			if v, ok, _ := unstructured.NestedBool(m, "spec", "affinity", "enablePodAntiAffinity"); !ok || !v {
				bad("affinity.enablePodAntiAffinity must be true")
			}
			l, _, _ := unstructured.NestedString(m, "spec", "inheritedMetadata", "labels", "sidecar.istio.io/inject")
			a, _, _ := unstructured.NestedString(m, "spec", "inheritedMetadata", "annotations", "sidecar.istio.io/inject")
			if s.Mesh && l != "false" && a != "false" {
				bad(`database pods must not get an Istio sidecar (inheritedMetadata sidecar.istio.io/inject: "false")`)
			}
			if size, _, _ := unstructured.NestedString(m, "spec", "storage", "size"); size == "" {
				bad("storage.size must be set")
			}
			// Preferred lets two instances share a node, and a commit's two copies (primary and sync standby) die
			// with it; accepted only where the environment may have fewer nodes than instances.
			if n, _, _ := unstructured.NestedInt64(m, "spec", "instances"); s.MinNodes >= int(n) {
				if t, _, _ := unstructured.NestedString(m, "spec", "affinity", "podAntiAffinityType"); t != "required" {
					bad(fmt.Sprintf("podAntiAffinityType must be required: the environment guarantees %d nodes for %d instances", s.MinNodes, n))
				}
			}
			if s.Production {
				plugins, _, _ := unstructured.NestedSlice(m, "spec", "plugins")
				archiving := false
				for _, p := range plugins {
					if pm, ok := p.(map[string]any); ok && pm["isWALArchiver"] == true {
						archiving = true
					}
				}
				if !archiving {
					bad("production needs continuous WAL archiving (a plugin with isWALArchiver)")
				}
				backup := false
				for _, b := range s.kind("ScheduledBackup") {
					if n, _, _ := nestedString(b.U.Object, "spec", "cluster", "name"); n == o.U.GetName() {
						backup = true
					}
				}
				if !backup {
					bad("production needs a ScheduledBackup")
				}
			}
		}
		return errs
	}},
	{"no-fault-injection-in-production", func(s *Set) []string {
		if !s.Production {
			return nil
		}
		var errs []string
		for _, vs := range s.kind("VirtualService") {
			routes, _, _ := unstructured.NestedSlice(vs.U.Object, "spec", "http")
			for _, r := range routes {
				if rm, ok := r.(map[string]any); ok && rm["fault"] != nil {
					errs = append(errs, fmt.Sprintf("[no-fault-injection-in-production] %s injects faults", vs.ID()))
				}
			}
		}
		return errs
	}},
	{"store-outlasts-bank-route", func(s *Set) []string {
		var errs []string
		var bankTimeout time.Duration
		for _, c := range canaries(s) {
			if c.Name == "bank" && c.Spec.Service.Timeout != "" {
				bankTimeout, _ = time.ParseDuration(c.Spec.Service.Timeout)
			}
		}
		ds, _ := deployments(s)
		for _, d := range ds {
			for _, c := range appContainers(d) {
				env := containerEnv(s, c)
				if _, ok := env["BANK_URL"]; !ok {
					continue
				}
				if bt := duration(env, "BANK_TIMEOUT", 2*time.Second); bankTimeout > 0 && bt <= bankTimeout {
					errs = append(errs, fmt.Sprintf("[store-outlasts-bank-route] %s: BANK_TIMEOUT %v must exceed the Bank route timeout %v (Envoy retries inside it)", d.Name, bt, bankTimeout))
				}
			}
		}
		return errs
	}},
}

// psaVersion is a pinned Pod Security version label value (latest is accepted too).
var psaVersion = regexp.MustCompile(`^v1\.\d+$`)

var semverExact = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// ClusterRules run over the union of everything Flux applies to one cluster.
var ClusterRules = []Rule{
	{"flux-graph", func(s *Set) []string {
		var errs []string
		ks := map[string]Object{}
		for _, o := range s.kind("Kustomization") {
			if o.GVK().Group == "kustomize.toolkit.fluxcd.io" {
				ks[o.U.GetName()] = o
			}
		}
		for name, o := range ks {
			m := o.U.Object
			if v, _, _ := unstructured.NestedBool(m, "spec", "prune"); !v {
				errs = append(errs, fmt.Sprintf("[flux-graph] Kustomization %s must prune", name))
			}
			if v, _, _ := unstructured.NestedBool(m, "spec", "wait"); !v {
				errs = append(errs, fmt.Sprintf("[flux-graph] Kustomization %s must wait for health", name))
			}
			for _, f := range []string{"interval", "timeout", "retryInterval"} {
				if v, _, _ := nestedString(m, "spec", f); v == "" {
					errs = append(errs, fmt.Sprintf("[flux-graph] Kustomization %s must set %s", name, f))
				}
			}
			deps, _, _ := unstructured.NestedSlice(m, "spec", "dependsOn")
			for _, d := range deps {
				dn, _, _ := unstructured.NestedString(d.(map[string]any), "name")
				if _, ok := ks[dn]; !ok {
					errs = append(errs, fmt.Sprintf("[flux-graph] Kustomization %s dependsOn %s, which does not exist", name, dn))
				}
			}
			if p, _, _ := nestedString(m, "spec", "path"); !dirExists(strings.TrimPrefix(path.Clean(p), "./")) {
				errs = append(errs, fmt.Sprintf("[flux-graph] Kustomization %s: path %s does not exist in the repository", name, path.Clean(p)))
			}
			kind, _, _ := nestedString(m, "spec", "sourceRef", "kind")
			src, _, _ := nestedString(m, "spec", "sourceRef", "name")
			if (kind != "GitRepository" || src != "flux-system") && s.find(kind, "", src) == nil {
				errs = append(errs, fmt.Sprintf("[flux-graph] Kustomization %s sourceRef %s %s does not exist (only flux-system comes from bootstrap)", name, kind, src))
			}
		}
		chains := [][2]string{{"infra-configs", "infra-controllers"}, {"apps", "infra-configs"}}
		if s.NoConfigs {
			chains = [][2]string{{"apps", "infra-controllers"}}
		}
		for _, chain := range chains {
			o, ok := ks[chain[0]]
			if !ok {
				errs = append(errs, fmt.Sprintf("[flux-graph] Kustomization %s is missing", chain[0]))
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
				errs = append(errs, fmt.Sprintf("[flux-graph] Kustomization %s must dependsOn %s", chain[0], chain[1]))
			}
		}
		return errs
	}},
	{"helm-pinned", func(s *Set) []string {
		var errs []string
		for _, o := range s.kind("HelmRelease") {
			m := o.U.Object
			v, _, _ := nestedString(m, "spec", "chart", "spec", "version")
			if !semverExact.MatchString(v) {
				errs = append(errs, fmt.Sprintf("[helm-pinned] %s: chart version %q must be an exact version", o.ID(), v))
			}
			kind, _, _ := nestedString(m, "spec", "chart", "spec", "sourceRef", "kind")
			name, _, _ := nestedString(m, "spec", "chart", "spec", "sourceRef", "name")
			ns, _, _ := nestedString(m, "spec", "chart", "spec", "sourceRef", "namespace")
			if ns == "" {
				ns = o.U.GetNamespace()
			}
			if s.find(kind, ns, name) == nil {
				errs = append(errs, fmt.Sprintf("[helm-pinned] %s: chart source %s %s/%s does not exist", o.ID(), kind, ns, name))
			}
			deps, _, _ := unstructured.NestedSlice(m, "spec", "dependsOn")
			for _, d := range deps {
				dm := d.(map[string]any)
				dn, _, _ := unstructured.NestedString(dm, "name")
				dns, _, _ := unstructured.NestedString(dm, "namespace")
				if dns == "" {
					dns = o.U.GetNamespace()
				}
				if s.find("HelmRelease", dns, dn) == nil {
					errs = append(errs, fmt.Sprintf("[helm-pinned] %s dependsOn HelmRelease %s/%s, which does not exist", o.ID(), dns, dn))
				}
			}
		}
		return errs
	}},
	{"namespaces-exist", func(s *Set) []string {
		var errs []string
		have := map[string]bool{"flux-system": true, "kube-system": true, "default": true}
		for _, o := range s.kind("Namespace") {
			have[o.U.GetName()] = true
		}
		for _, o := range s.Objects {
			if ns := o.U.GetNamespace(); ns != "" && !have[ns] {
				errs = append(errs, fmt.Sprintf("[namespaces-exist] %s: namespace %s is not created by this cluster's Flux tree", o.ID(), ns))
			}
		}
		return errs
	}},
	{"image-automation", func(s *Set) []string {
		var errs []string
		for _, o := range s.kind("ImageUpdateAutomation") {
			path, _, _ := nestedString(o.U.Object, "spec", "update", "path")
			text, err := readRepoFile(strings.TrimPrefix(path, "./") + "/kustomization.yaml")
			if err != nil {
				errs = append(errs, fmt.Sprintf("[image-automation] %s: update.path %s has no kustomization.yaml", o.ID(), path))
				continue
			}
			markers := regexp.MustCompile(`\{"\$imagepolicy":\s*"([^:"]+):([^:"]+)(:tag|:name|:digest)?"\}`).FindAllStringSubmatch(text, -1)
			if len(markers) == 0 {
				errs = append(errs, fmt.Sprintf("[image-automation] %s: %s has no $imagepolicy setter marker", o.ID(), path))
			}
			for _, mk := range markers {
				if s.find("ImagePolicy", mk[1], mk[2]) == nil {
					errs = append(errs, fmt.Sprintf("[image-automation] %s: marker names ImagePolicy %s/%s, which does not exist", o.ID(), mk[1], mk[2]))
				}
			}
		}
		for _, p := range s.kind("ImagePolicy") {
			if r, _, _ := nestedString(p.U.Object, "spec", "policy", "semver", "range"); r == "" {
				errs = append(errs, fmt.Sprintf("[image-automation] %s must select tags by semver", p.ID()))
			}
		}
		return errs
	}},
	{"authz-and-metrics-resolve", func(s *Set) []string {
		var errs []string
		ds, _ := deployments(s)
		type selecting struct {
			obj  Object
			path []string
		}
		var selectors []selecting
		for _, ap := range s.kind("AuthorizationPolicy") {
			selectors = append(selectors, selecting{ap, []string{"spec", "selector", "matchLabels"}})
		}
		// A workload Sidecar that misses Flagger's primary pods would leave them on the namespace default.
		for _, sc := range s.kind("Sidecar") {
			selectors = append(selectors, selecting{sc, []string{"spec", "workloadSelector", "labels"}})
		}
		for _, x := range selectors {
			ap := x.obj
			sel, found, _ := unstructured.NestedStringMap(ap.U.Object, x.path...)
			if !found {
				continue
			}
			ok := false
			for _, d := range ds {
				if d.Namespace != ap.U.GetNamespace() {
					continue
				}
				all := true
				for _, ls := range servingLabelSets(s, d) {
					if !labels.SelectorFromSet(sel).Matches(ls) {
						all = false
					}
				}
				ok = ok || all
			}
			if !ok {
				errs = append(errs, fmt.Sprintf("[authz-and-metrics-resolve] %s selector %v matches no workload's serving pods (primary and canary)", ap.ID(), sel))
			}
		}
		for _, c := range canaries(s) {
			if c.Spec.Analysis == nil {
				continue
			}
			for _, m := range c.Spec.Analysis.Metrics {
				if m.TemplateRef == nil {
					continue
				}
				ns := m.TemplateRef.Namespace
				if ns == "" {
					ns = c.Namespace
				}
				if s.find("MetricTemplate", ns, m.TemplateRef.Name) == nil {
					errs = append(errs, fmt.Sprintf("[authz-and-metrics-resolve] Canary %s metric %s: MetricTemplate %s/%s does not exist", c.Name, m.Name, ns, m.TemplateRef.Name))
				}
			}
		}
		return errs
	}},
	{"chart-matches-validated-api", func(s *Set) []string {
		var errs []string
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
				errs = append(errs, fmt.Sprintf("[chart-matches-validated-api] %s: chart %s %s, but the manifests are validated against the API of chart %s", o.ID(), chart, v, w))
			}
		}
		return errs
	}},
}

// ChartForAPI maps charts whose version differs from their app version to the chart release that ships the
// API version pinned in go.mod (cloudnative-pg chart 0.29.0 = operator 1.30.0, kube-prometheus-stack 87.0.0
// = prometheus-operator v0.92.0, flagger's loadtester chart from the flagger module). Update together.
var ChartForAPI = map[string]string{
	"cloudnative-pg":        "0.29.0",
	"kube-prometheus-stack": "87.0.0",
	"loadtester":            "0.38.0",
}

func readRepoFile(p string) (string, error) {
	b, err := readFile(p)
	return string(b), err
}

// RunRules applies rules to a set and returns all findings.
func RunRules(s *Set, rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Check(s)...)
	}
	return out
}
