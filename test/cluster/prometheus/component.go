// Package prometheus is the throwaway cluster's Prometheus: built from its module (with promtool), imaged,
// its scrape configuration (config.yaml) checked with promtool, and deployed to namespace monitoring
// (prometheus.yaml), where Flagger's analyses and the e2e's metrics row query it.
package prometheus

import (
	"context"
	"time"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
)

const (
	// Version is the Go module version of Prometheus 3.16.0 (Prometheus 3.x is published as v0.3xx.y of
	// github.com/prometheus/prometheus).
	Version = "v0.316.0"
	Release = "3.16.0"
)

// Component builds prometheus and promtool, without the builtinassets tag (its web UI is built with npm, not
// part of the module), so the UI pages answer 404; the HTTP API that Flagger and the e2e query is complete.
func Component() gobuild.Component {
	const prom = "github.com/prometheus/prometheus"
	// The version variables that Prometheus's .promu.yml sets (BuildDate left out: reproducible).
	ld := "-X github.com/prometheus/common/version.Version=" + Release +
		" -X github.com/prometheus/common/version.Revision=" + Version +
		" -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.BuildUser=txmesh"
	return gobuild.Component{Name: "prometheus", Module: prom, Version: Version, GoLine: "1.26.7",
		Packages: []string{prom + "/cmd/prometheus", prom + "/cmd/promtool"}, Ldflags: ld, Expect: 8 * time.Minute}
}

// Image is the server's image: /bin/prometheus and /bin/promtool, as nobody.
func Image(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
	return b.Binary(ctx, "txmesh.local/prometheus:"+Version,
		map[string]string{"/bin/prometheus": bins["prometheus"], "/bin/promtool": bins["promtool"]},
		[]string{"/bin/prometheus"}, "65534:65534")
}
