// Package flux is Flux's controllers in the throwaway cluster: source-, kustomize-, image-reflector- and
// image-automation-controller (what flux/clusters/e2e uses) and helm-controller (built by `make
// cluster-build` only: no chart is reachable offline), each built from its module (component.go), imaged,
// and deployed from its module's own kustomize bases into flux-system (deploy.go); then what `flux
// bootstrap` applies (Bootstrap) and the resources and Ready condition the e2e reads.
package flux

import (
	"context"
	"time"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
)

// Versions of the controllers (issue 11): the root modules of the API versions that test/manifests validates
// flux/ against (github.com/fluxcd/<controller>/api in test/manifests/go.mod).
const (
	SourceControllerVersion          = "v1.9.6"
	KustomizeControllerVersion       = "v1.9.6"
	ImageReflectorControllerVersion  = "v1.2.4"
	ImageAutomationControllerVersion = "v1.2.4"
	HelmControllerVersion            = "v1.6.4"
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
// serves, per component, as kube.Component does for k8s.io/endpointslice: patch releases of fluxcd/pkg modules
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
func controller(name, version string, replace map[string]string) gobuild.Component {
	mod := "github.com/fluxcd/" + name
	rep := map[string]string{mod + "/api": mod + "/api " + version}
	for k, v := range replace {
		rep[k] = v
	}
	for k, v := range proxySubstitutes[name] {
		rep[k] = v
	}
	return gobuild.Component{Name: name, Module: mod, Version: version, Packages: []string{mod}, GoLine: "1.26.0",
		Replace: rep, Expect: 6 * time.Minute}
}

// Controllers are the controllers flux/clusters/e2e needs (no helm-controller: no chart is reachable).
var Controllers = []string{"source-controller", "kustomize-controller", "image-reflector-controller",
	"image-automation-controller"}

// Components returns every controller, helm-controller last. Each wrapper repeats its module's whole
// `replace` block (a wrapper's dependencies' replaces are ignored by Go), with published versions for the
// `./api` directories.
func Components() []gobuild.Component {
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
	return []gobuild.Component{
		controller("source-controller", SourceControllerVersion, map[string]string{digest: fluxDigest}),
		controller("kustomize-controller", KustomizeControllerVersion, with(kustomize, digest, fluxDigest,
			"gopkg.in/yaml.v3", "gopkg.in/yaml.v3 v3.0.1")),
		controller("image-reflector-controller", ImageReflectorControllerVersion, nil),
		controller("image-automation-controller", ImageAutomationControllerVersion, kustomize),
		controller("helm-controller", HelmControllerVersion, with(kustomize, digest, helmDigest)),
	}
}

// Find returns the named controller of Components.
func Find(name string) gobuild.Component {
	for _, c := range Components() {
		if c.Name == name {
			return c
		}
	}
	panic("unknown Flux controller " + name)
}

// Image is a controller's image as upstream lays it out: /usr/local/bin/<controller>, USER 65534:65534
// (kustomize-controller under tini upstream, which only reaps the children of SOPS/gpg decryption, not used
// here). The reference is txmesh.local/<controller>:<version>.
func Image(ctx context.Context, b *images.Builder, c gobuild.Component, bins gobuild.Binaries) (images.Image, error) {
	bin := "/usr/local/bin/" + c.Name
	return b.Binary(ctx, "txmesh.local/"+c.Name+":"+c.Version, map[string]string{bin: bins[c.Name]},
		[]string{bin}, "65534:65534")
}
