package registry

import (
	"context"
	"maps"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// The wrapper repeats the module's go line and replace block (none).
func TestComponentRepeatsUpstreamGoMod(t *testing.T) {
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	c := Component()
	goLine, want, err := gobuild.Upstream(context.Background(), cache, c)
	if err != nil {
		t.Fatal(err)
	}
	if c.GoLine != goLine || !maps.Equal(want, c.Replace) {
		t.Errorf("go %q replaces %v; upstream's go.mod: go %q, %v", c.GoLine, c.Replace, goLine, want)
	}
}
