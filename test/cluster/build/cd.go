package build

import (
	"strings"
	"time"
)

// Versions of the continuous-delivery components (issue 11). The Flux controllers are the root modules of
// the API versions that test/manifests validates flux/ against (github.com/fluxcd/<controller>/api in
// test/manifests/go.mod); Flagger is the version flux/infrastructure/controllers/base/flagger.yaml and
// test/manifests pin.
const (
	SourceControllerVersion          = "v1.9.6"
	KustomizeControllerVersion       = "v1.9.6"
	ImageReflectorControllerVersion  = "v1.2.4"
	ImageAutomationControllerVersion = "v1.2.4"
	HelmControllerVersion            = "v1.6.4"
	FlaggerVersion                   = "v1.44.0"
	DistributionVersion              = "v3.0.0"
	// PrometheusVersion is the Go module version of Prometheus 3.16.0 (Prometheus 3.x is published as
	// v0.3xx.y of github.com/prometheus/prometheus).
	PrometheusVersion = "v0.316.0"
	PrometheusRelease = "3.16.0"
)

// Published versions standing in for the Flux modules' `replace … => ./api`: the api module tagged with the
// controller (each controller also requires exactly that version).
const (
	// fluxDigest is the go-digest commit that source- and kustomize-controller replace go-digest with (BLAKE3).
	fluxDigest = "github.com/opencontainers/go-digest v1.0.1-0.20220411205349-bde1400a84be"
	// helmDigest is helm-controller's (a later commit of the same branch).
	helmDigest = "github.com/opencontainers/go-digest v1.0.1-0.20231025023718-d50d2fec9c98"
	// kustomizeV581 is the kustomize (v5.8.1) that kustomize-, image-automation- and helm-controller pin.
	kustomizeV581 = "v0.21.1"
)

// proxySubstitutes replaces dependency versions the module proxy refuses (403) with the nearest version it
// serves, per component, as kubernetes() does for k8s.io/endpointslice: patch releases of fluxcd/pkg modules
// (checked to compile with the controller).
var proxySubstitutes = map[string]map[string]string{
	"source-controller": {
		// v0.18.3 (required) and v0.18.2 are refused.
		"github.com/fluxcd/pkg/artifact": "github.com/fluxcd/pkg/artifact v0.18.1",
		// Only the controller's tests import it, but `go mod tidy` resolves tests of dependencies too;
		// v0.40.2 (required) is refused.
		"github.com/fluxcd/pkg/helmtestserver": "github.com/fluxcd/pkg/helmtestserver v0.40.1",
	},
	"image-reflector-controller": {
		// v0.18.2 (required) is refused.
		"github.com/fluxcd/pkg/artifact": "github.com/fluxcd/pkg/artifact v0.18.1",
	},
}

// flux is a Flux controller: the module's root package is its main package; upstream builds it with
// CGO_ENABLED=0 -trimpath and no ldflags (the Dockerfiles), on the go line of its go.mod.
func flux(name, version string, replace map[string]string) Component {
	mod := "github.com/fluxcd/" + name
	rep := map[string]string{mod + "/api": mod + "/api " + version}
	for k, v := range replace {
		rep[k] = v
	}
	for k, v := range proxySubstitutes[name] {
		rep[k] = v
	}
	return Component{Name: name, Module: mod, Version: version, Packages: []string{mod}, GoLine: "1.26.0",
		Replace: rep, Expect: 6 * time.Minute}
}

// CDComponents returns the components of continuous delivery in the throwaway cluster, in build order:
// the four Flux controllers that flux/clusters uses, helm-controller, Flagger and its load tester, the OCI
// registry (a process on the host, like etcd) and Prometheus. Each wrapper repeats its module's whole
// `replace` block (a wrapper's dependencies' replaces are ignored by Go), with published versions for the
// `./api` directories.
func CDComponents() []Component {
	kustomize := map[string]string{
		"sigs.k8s.io/kustomize/api":   "sigs.k8s.io/kustomize/api " + kustomizeV581,
		"sigs.k8s.io/kustomize/kyaml": "sigs.k8s.io/kustomize/kyaml " + kustomizeV581,
	}
	with := func(a map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range a {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	const digest = "github.com/opencontainers/go-digest"
	const dist = "github.com/distribution/distribution/v3"
	const prom = "github.com/prometheus/prometheus"
	// The version variables that Prometheus's .promu.yml sets (BuildDate left out: reproducible).
	promLd := "-X github.com/prometheus/common/version.Version=" + PrometheusRelease +
		" -X github.com/prometheus/common/version.Revision=" + PrometheusVersion +
		" -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.BuildUser=txmesh"
	return []Component{
		flux("source-controller", SourceControllerVersion, map[string]string{digest: fluxDigest}),
		flux("kustomize-controller", KustomizeControllerVersion, with(kustomize, digest, fluxDigest,
			"gopkg.in/yaml.v3", "gopkg.in/yaml.v3 v3.0.1")),
		flux("image-reflector-controller", ImageReflectorControllerVersion, nil),
		flux("image-automation-controller", ImageAutomationControllerVersion, kustomize),
		flux("helm-controller", HelmControllerVersion, with(kustomize, digest, helmDigest)),
		{Name: "flagger", Module: "github.com/fluxcd/flagger", Version: FlaggerVersion, GoLine: "1.26.0",
			// cmd/loadtester is built too but not deployed: make e2e serves the load tester's webhooks itself.
			Packages: []string{"github.com/fluxcd/flagger/cmd/flagger", "github.com/fluxcd/flagger/cmd/loadtester"},
			Ldflags:  "-X github.com/fluxcd/flagger/pkg/version.REVISION=" + FlaggerVersion, Expect: 5 * time.Minute},
		{Name: "distribution", Module: dist, Version: DistributionVersion, GoLine: "1.23.7",
			Packages: []string{dist + "/cmd/registry"},
			Ldflags: "-X " + dist + "/version.version=" + DistributionVersion + " -X " + dist +
				"/version.revision=" + DistributionVersion + " -X " + dist + "/version.mainpkg=" + dist,
			Expect: 3 * time.Minute},
		// Without the builtinassets tag (its web UI is built with npm, not part of the module), so the UI
		// pages answer 404; the HTTP API that Flagger and the e2e query is complete.
		{Name: "prometheus", Module: prom, Version: PrometheusVersion, GoLine: "1.26.7",
			Packages: []string{prom + "/cmd/prometheus", prom + "/cmd/promtool"},
			Ldflags:  promLd, Expect: 8 * time.Minute},
	}
}

// FindCD returns the named component of CDComponents.
func FindCD(name string) Component {
	for _, c := range CDComponents() {
		if c.Name == name {
			return c
		}
	}
	panic("unknown CD component " + name)
}

// CDImage is how one CD binary is imaged (images.Builder.Binary): where upstream's image puts it, its
// entrypoint and user. The reference is txmesh.local/<component name>:<version>.
type CDImage struct {
	Ref        string
	Component  string            // the CDComponents name
	Files      map[string]string // path in the image → binary name (a key of the component's Binaries)
	Entrypoint []string
	User       string
}

// CDImages returns the images of the components that run in the cluster (the registry runs on the host;
// Prometheus runs in the cluster from its image or on the host from its binary).
func CDImages() []CDImage {
	var out []CDImage
	for _, c := range CDComponents() {
		ref := "txmesh.local/" + c.Name + ":" + c.Version
		switch {
		case strings.HasPrefix(c.Module, "github.com/fluxcd/") && c.Name != "flagger":
			// Upstream: /usr/local/bin/<controller>, USER 65534:65534 (kustomize-controller under tini,
			// which only reaps the children of SOPS/gpg decryption, not used here).
			bin := "/usr/local/bin/" + c.Name
			out = append(out, CDImage{Ref: ref, Component: c.Name, Files: map[string]string{bin: c.Name},
				Entrypoint: []string{bin}, User: "65534:65534"})
		case c.Name == "flagger":
			// Upstream: /flagger as nobody; its Deployment sets runAsUser 10001.
			out = append(out, CDImage{Ref: ref, Component: c.Name, Files: map[string]string{"/flagger": "flagger"},
				Entrypoint: []string{"/flagger"}, User: "65534:65534"})
		case c.Name == "prometheus":
			out = append(out, CDImage{Ref: ref, Component: c.Name,
				Files:      map[string]string{"/bin/prometheus": "prometheus", "/bin/promtool": "promtool"},
				Entrypoint: []string{"/bin/prometheus"}, User: "65534:65534"})
		}
	}
	return out
}
