package flux

import (
	"context"
	"maps"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// A wrapper with proxySubstitutes repeats its module's go line and whole `replace` block, read from the
// module's own go.mod (a directory replace, ./api, becomes that module at the component's version), and
// nothing else but the substitutes for versions the module proxy refuses. The other controllers are checked,
// with every component the stack builds, by stack's TestComponentsRepeatUpstreamGoMod.
func TestSubstitutedComponentsRepeatUpstreamGoMod(t *testing.T) {
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Components() {
		if proxySubstitutes[c.Name] == nil {
			continue
		}
		goLine, want, err := gobuild.Upstream(context.Background(), cache, c)
		if err != nil {
			t.Fatal(err)
		}
		if c.GoLine != goLine {
			t.Errorf("%s: wrapper go line %q, upstream %q", c.Name, c.GoLine, goLine)
		}
		maps.Copy(want, proxySubstitutes[c.Name])
		if !maps.Equal(want, c.Replace) {
			t.Errorf("%s %s: replaces\n%v\nupstream's go.mod needs\n%v", c.Name, c.Version, c.Replace, want)
		}
	}
}
