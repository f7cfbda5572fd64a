package manifests

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// What the rules share: typed views of the rendered objects and what the apps' configuration means.

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

// deployments decodes the set's Deployments; one that does not decode is reported to r (nil: not reported).
func deployments(s *Set, r *Report) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, o := range s.kind("Deployment") {
		d, err := toTyped[appsv1.Deployment](o)
		if err != nil {
			if r != nil {
				r.Add(o.ID(), "", "%v", err)
			}
			continue
		}
		out = append(out, d)
	}
	return out
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

// psaVersion is a pinned Pod Security version label value (latest is accepted too).
var psaVersion = regexp.MustCompile(`^v1\.\d+$`)

var semverExact = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

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

// template is a pod template with the ID of the Deployment or Job that owns it.
type template struct {
	id string
	t  *corev1.PodTemplateSpec
}

// sortedTemplates returns the pod templates of the set in a stable order (findings in a stable order).
func sortedTemplates(s *Set) []template {
	m := podTemplates(s)
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]template, 0, len(ids))
	for _, id := range ids {
		out = append(out, template{id, m[id]})
	}
	return out
}

// podContainer is a container of a pod template, init or not.
type podContainer struct {
	corev1.Container
	init bool
}

func containersOf(t *corev1.PodTemplateSpec) []podContainer {
	var out []podContainer
	for _, c := range t.Spec.InitContainers {
		out = append(out, podContainer{c, true})
	}
	for _, c := range t.Spec.Containers {
		out = append(out, podContainer{c, false})
	}
	return out
}

// field is the path of one of the container's fields.
func (c podContainer) field(f ...string) string { return containerField(c.init, c.Name, f...) }
