package stack

import (
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

// bank-db before the major-upgrade row: the 17 image, archiving under its own serverName; the row's upgrade
// patch moves it to the 18 target and back to the manifests' serverName (none set: the cluster's name);
// store-db keeps the shipped image throughout. In both overlays the e2e deploys (Flux's after cd-bootstrap).
func TestBankDBPatchRenders(t *testing.T) {
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, overlay := range []string{txmesh.Overlay, txmesh.FluxOverlay} {
		for _, c := range []struct{ image, serverName string }{
			{cnpg.UpgradeFrom.Ref(), PreUpgradeServerName},
			{cnpg.UpgradeTo.Ref(), ""},
		} {
			objs, err := txmesh.Render(repo, overlay, txmesh.LocalImage, "e2e", BankDBPatch(c.image, c.serverName))
			if err != nil {
				t.Fatal(err)
			}
			for db, want := range map[string]string{"bank-db": c.image, "store-db": cnpg.Shipped.Ref()} {
				o := manifests.Find(objs, "Cluster", db)
				if o == nil {
					t.Fatalf("%s: no Cluster %s", overlay, db)
				}
				image, _, _ := unstructured.NestedString(o.Object, "spec", "imageName")
				plugins, _, _ := unstructured.NestedSlice(o.Object, "spec", "plugins")
				if len(plugins) != 1 {
					t.Fatalf("%s: %s has plugins %v", overlay, db, plugins)
				}
				server, _, _ := unstructured.NestedString(plugins[0].(map[string]any), "parameters", "serverName")
				wantServer := ""
				if db == "bank-db" {
					wantServer = c.serverName
				}
				if image != want || server != wantServer {
					t.Errorf("%s: %s runs %s archiving under serverName %q; want %s, %q", overlay, db, image, server, want, wantServer)
				}
			}
		}
	}
}
