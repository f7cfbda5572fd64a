package objectstore

import (
	"context"
	"strings"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/images"
)

// The image: the gateway at Binary as the entrypoint, as nonroot (the Deployment's user).
func TestImage(t *testing.T) {
	img, err := Image(context.Background(), &images.Builder{Dir: t.TempDir()}, map[string]string{"versitygw": versitygw(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.Config()
	if err != nil {
		t.Fatal(err)
	}
	if img.Ref != "txmesh.local/versitygw:"+Version || strings.Join(cfg.Config.Entrypoint, " ") != Binary || cfg.Config.User != "65532:65532" {
		t.Errorf("%s: entrypoint %v, user %q", img.Ref, cfg.Config.Entrypoint, cfg.Config.User)
	}
}
