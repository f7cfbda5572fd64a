// Package objectstore is the throwaway cluster's S3-compatible object store, where CloudNativePG's backups go
// (issue 22): Versity's S3 gateway (versitygw, Apache-2.0) over its posix backend, one bucket a directory, built
// from its module (this file) and run on the host as one of the cluster's daemons, a Service of the cluster
// (objectstore.go).
package objectstore

import (
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// Version is github.com/versity/versitygw's: the only release the module proxy lists (MinIO's server is
// AGPL, SeaweedFS only a pseudo-version).
const Version = "v1.8.0"

// Module is versitygw's Go module.
const Module = "github.com/versity/versitygw"

// Component builds the gateway as upstream's release does (.goreleaser.yaml: CGO_ENABLED=0, ./cmd/versitygw,
// main.Version/Build/BuildTime; the commit and date are not in the module, so Build is the tag and
// BuildTime is left out for a reproducible binary), on the go line of its go.mod (no replace block).
func Component() gobuild.Component {
	return gobuild.Component{Name: "versitygw", Module: Module, Version: Version, GoLine: "1.25.0",
		Packages: []string{Module + "/cmd/versitygw"},
		Ldflags:  "-X=main.Version=" + strings.TrimPrefix(Version, "v") + " -X=main.Build=" + Version,
		Expect:   4 * time.Minute}
}
