// Package barman is CloudNativePG's Barman Cloud plugin (issue 22): the plugin that takes the databases'
// base backups and archives their WAL to the object store (package objectstore). One binary, `manager`,
// built from its module (this file), runs as the operator-side plugin (`manager operator`, a Deployment in
// cnpg-system that CloudNativePG's operator calls over mutual TLS) and as the sidecar the plugin injects into
// every instance pod (`manager instance`), whose image also carries Debian's barman-cloud tools
// (sidecar.go). Its manifests are the module's own release kustomization (kubernetes/) with the harness's
// certificates in place of cert-manager's (barman.go).
package barman

import (
	"context"
	"time"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
)

// Version is github.com/cloudnative-pg/plugin-barman-cloud's: the newest release the module proxy serves,
// built against CloudNativePG v1.30.0 (its go.mod requires cloudnative-pg and api v1.30.0; its docs ask for
// 1.26 or later).
const Version = "v0.15.0"

// Module is the plugin's Go module.
const Module = "github.com/cloudnative-pg/plugin-barman-cloud"

// Component builds cmd/manager as upstream's Dockerfiles do (CGO_ENABLED=0, no ldflags: the plugin reports the
// version compiled into internal/cnpgi/metadata), on the go line of its go.mod (no replace block).
func Component() gobuild.Component {
	return gobuild.Component{Name: "plugin-barman-cloud", Module: Module, Version: Version, GoLine: "1.26.4",
		Packages: []string{Module + "/cmd/manager"}, Expect: 5 * time.Minute}
}

// Binary is where both images keep the manager (the plugin injects the sidecar with the probe command
// `/manager healthcheck unix`, so the path is fixed).
const Binary = "/manager"

// PluginImage is the operator-side plugin's image as upstream's Dockerfile.plugin lays it out: /manager, the
// entrypoint, as 65532 (its Deployment runs it as 10001).
func PluginImage(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
	return b.Binary(ctx, "txmesh.local/plugin-barman-cloud:"+Version, map[string]string{Binary: bins["manager"]},
		[]string{Binary}, "65532:65532")
}

// CNPGVersion is the CloudNativePG the plugin must work with (cnpg.Version).
const CNPGVersion = cnpg.Version
