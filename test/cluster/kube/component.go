package kube

import (
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// Version is the one version of every Kubernetes component the cluster runs (and of its pause image).
const Version = "v1.32.13"

// module is Kubernetes' Go module.
const module = "k8s.io/kubernetes"

// Component builds kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet and kubectl.
// The staging modules are separate modules that upstream replaces with directories; the wrapper pins each to
// its published version. k8s.io/endpointslice v0.32.13 is refused by the module proxy, its v0.32.12 is
// identical in content for our purpose (no API change within a patch line).
func Component() gobuild.Component {
	staging := []string{"api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
		"cloud-provider", "cluster-bootstrap", "code-generator", "component-base", "component-helpers",
		"controller-manager", "cri-api", "cri-client", "csi-translation-lib", "dynamic-resource-allocation",
		"endpointslice", "externaljwt", "kms", "kube-aggregator", "kube-controller-manager", "kube-proxy",
		"kube-scheduler", "kubectl", "kubelet", "metrics", "mount-utils", "pod-security-admission",
		"sample-apiserver", "sample-cli-plugin", "sample-controller"}
	minor := strings.TrimPrefix(Version, "v1.")
	rep := map[string]string{}
	for _, m := range staging {
		v := "v0." + minor
		if m == "endpointslice" {
			v = "v0.32.12"
		}
		rep["k8s.io/"+m] = "k8s.io/" + m + " " + v
	}
	var ld []string
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld = append(ld, "-X "+p+".gitVersion="+Version, "-X "+p+".gitMajor=1",
			"-X "+p+".gitMinor=32", "-X "+p+".gitTreeState=clean")
	}
	var pkgs []string
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
		"kubelet", "kubectl"} {
		pkgs = append(pkgs, "k8s.io/kubernetes/cmd/"+c)
	}
	return gobuild.Component{Name: "kubernetes", Module: module, Version: Version, Packages: pkgs,
		GoLine: "1.23.0", GoDebug: []string{"default=go1.23"}, Replace: rep, Ldflags: strings.Join(ld, " "),
		Expect: 10 * time.Minute}
}
