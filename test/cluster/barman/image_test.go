package barman

import (
	"context"
	"strings"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/images"
)

// The operator-side plugin's image: /manager as the entrypoint, as nonroot, as upstream's Dockerfile.plugin.
func TestPluginImage(t *testing.T) {
	img, err := PluginImage(context.Background(), &images.Builder{Dir: t.TempDir()}, map[string]string{"manager": manager(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.Config()
	if err != nil {
		t.Fatal(err)
	}
	if img.Ref != "txmesh.local/plugin-barman-cloud:"+Version || strings.Join(cfg.Config.Entrypoint, " ") != Binary || cfg.Config.User != "65532:65532" {
		t.Errorf("%s: entrypoint %v, user %q", img.Ref, cfg.Config.Entrypoint, cfg.Config.User)
	}
}
