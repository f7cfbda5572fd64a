package barman

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/objectstore"
)

// ObjectStore is the plugin's ObjectStore resource for a bucket path of the cluster's object store (e.g.
// "s3://backups/bank-db/"), in the databases' namespace, reading the S3 keys from credentials (a Secret like
// objectstore.CredentialsSecret there); WAL and base backups gzip-compressed. A Cluster names it in
// .spec.plugins[].parameters.barmanObjectName. No AWS_*_CHECKSUM_* workaround (upstream docs suggest it for
// some S3-compatible stores): versitygw takes Debian's boto3 1.40 as it is (TestSidecarToolsAgainstObjectStore).
func ObjectStore(namespace, name, destinationPath, credentials string) *unstructured.Unstructured {
	ref := func(key string) map[string]any { return map[string]any{"name": credentials, "key": key} }
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"configuration": map[string]any{
				"destinationPath": destinationPath,
				"endpointURL":     objectstore.URL,
				"s3Credentials": map[string]any{
					"accessKeyId":     ref(objectstore.AccessKey),
					"secretAccessKey": ref(objectstore.SecretKey),
				},
				"wal":  map[string]any{"compression": "gzip"},
				"data": map[string]any{"compression": "gzip"},
			},
		},
	}}
}
