package stack

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/objectstore"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

// The harness makes the Secret, the bucket and the object store that the shipped ObjectStores name: every name
// they read must be one it writes, in both overlays the e2e deploys (Flux applies e2e-cd).
func TestShippedObjectStoresMatchTheHarness(t *testing.T) {
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, overlay := range []string{txmesh.Overlay, txmesh.FluxOverlay} {
		objs, err := txmesh.Render(repo, overlay, txmesh.LocalImage, "e2e", nil)
		if err != nil {
			t.Fatal(err)
		}
		var dbs []string
		for _, o := range objs {
			if o.GetKind() != "ObjectStore" {
				continue
			}
			str := func(path ...string) string {
				v, _, _ := unstructured.NestedString(o.Object, append([]string{"spec", "configuration"}, path...)...)
				return v
			}
			for field, want := range map[string]string{
				"s3Credentials.accessKeyId.name":     BackupSecret,
				"s3Credentials.accessKeyId.key":      objectstore.AccessKey,
				"s3Credentials.secretAccessKey.name": BackupSecret,
				"s3Credentials.secretAccessKey.key":  objectstore.SecretKey,
				"endpointURL":                        objectstore.URL,
			} {
				if got := str(strings.Split(field, ".")...); got != want {
					t.Errorf("%s: ObjectStore %s: %s is %q, the harness makes %q", overlay, o.GetName(), field, got, want)
				}
			}
			dest := str("destinationPath")
			db := filepath.Base(dest)
			if dest != "s3://"+BackupBucket+"/"+db {
				t.Errorf("%s: ObjectStore %s: destinationPath %q is not s3://%s/<database>", overlay, o.GetName(), dest, BackupBucket)
			}
			dbs = append(dbs, db)
		}
		slices.Sort(dbs)
		if !slices.Equal(dbs, BackupDatabases) {
			t.Errorf("%s: ObjectStores archive %v; the harness empties %v", overlay, dbs, BackupDatabases)
		}
	}
}
