// Package coredns is the cluster DNS: CoreDNS built from its module, imaged, and deployed to kube-system
// (coredns.yaml) as the kube-dns Service the kubelets hand to pods. It answers for cluster.local only: no
// upstream, so nothing in the cluster resolves, let alone reaches, a name outside it.
package coredns

import (
	"context"
	_ "embed"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Version is the pinned github.com/coredns/coredns.
const Version = "v1.12.4"

// Component builds coredns.
func Component() gobuild.Component {
	return gobuild.Component{Name: "coredns", Module: "github.com/coredns/coredns", Version: Version,
		Packages: []string{"github.com/coredns/coredns"},
		Ldflags:  "-X github.com/coredns/coredns/coremain.GitCommit=" + Version, Expect: 4 * time.Minute}
}

// Image is CoreDNS's image: /coredns, run as 65532.
func Image(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
	return b.Binary(ctx, "txmesh.local/coredns:"+Version, map[string]string{"/coredns": bins["coredns"]},
		[]string{"/coredns"}, "65532:65532")
}

//go:embed coredns.yaml
var manifest string

// Objects renders CoreDNS with the image and the kube-dns Service at dnsIP (the address the kubelets hand
// to pods).
func Objects(image, dnsIP string) ([]*unstructured.Unstructured, error) {
	return manifests.Decode([]byte(strings.NewReplacer("COREDNS_IMAGE", image, "DNS_SERVICE_IP", dnsIP).Replace(manifest)))
}

// Wait waits until CoreDNS is available.
func Wait(ctx context.Context, a *manifests.Applier) error {
	return a.Wait(ctx, manifests.Deployments, "kube-system", "coredns", 3*time.Minute, manifests.DeploymentAvailable)
}
