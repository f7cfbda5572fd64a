package stack

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/barman"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/objectstore"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

// What the shipped backups (kustomize/components/backup) name: the bucket of both ObjectStores'
// destinationPath and the Secret with their S3 keys in the databases' namespace.
const (
	BackupBucket = "txmesh-backups"
	BackupSecret = "backup-s3-credentials"
)

// BackupDatabases are the prefixes of BackupBucket, one per Cluster (destinationPath s3://txmesh-backups/<db>).
var BackupDatabases = []string{"bank-db", "store-db"}

// buildBackups builds (or finds cached) the object store, the Barman Cloud plugin and its two images. The
// plugin's binary is kept apart from s.Bin: it is called manager, like CloudNativePG's.
func (s *Stack) buildBackups(ctx context.Context) error {
	gw, err := gobuild.Ensure(ctx, s.cache, objectstore.Component(), s.log)
	if err != nil {
		return err
	}
	s.Bin["versitygw"] = gw["versitygw"]
	plugin, err := gobuild.Ensure(ctx, s.cache, barman.Component(), s.log)
	if err != nil {
		return err
	}
	if s.Images["barman-plugin"], err = barman.PluginImage(ctx, s.builder, plugin); err != nil {
		return err
	}
	s.Images["barman-sidecar"], err = barman.SidecarImage(ctx, s.builder, plugin)
	return err
}

// deployBackups puts the object store (a daemon on the host, Service objectstore/objectstore) and the Barman
// Cloud plugin (cnpg-system, mutual TLS with the operator from the harness's certificates) in place, waits for
// both and makes the bucket. The keys are made once per cluster; a reused cluster keeps its keys and
// certificates (read back from it).
func (s *Stack) deployBackups(ctx context.Context) error {
	for _, role := range []string{"barman-plugin", "barman-sidecar"} {
		if err := s.Cluster.ImportImage(ctx, s.Images[role].Path); err != nil {
			return err
		}
	}
	creds, err := s.objectStoreCredentials(ctx)
	if err != nil {
		return err
	}
	if err := s.startObjectStore(ctx, creds); err != nil {
		return err
	}
	store, err := objectstore.Objects(s.Cluster.Layout().HostIP(), creds)
	if err != nil {
		return err
	}
	tls, err := s.pluginTLS(ctx)
	if err != nil {
		return err
	}
	dir, err := gobuild.ModuleDir(ctx, s.cache, barman.Component())
	if err != nil {
		return err
	}
	plugin, err := barman.Objects(dir, s.Images["barman-plugin"].Ref, s.Images["barman-sidecar"].Ref, tls)
	if err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, append(store, plugin...)); err != nil {
		return err
	}
	if err := s.Apply.Wait(ctx, manifests.Deployments, barman.Namespace, barman.Name, 3*time.Minute,
		manifests.DeploymentAvailable); err != nil {
		return err
	}
	s.backupCreds = creds
	if err := s.makeBucket(ctx); err != nil {
		return err
	}
	s.logf("backups ready: versitygw %s (bucket %s), Barman Cloud plugin %s (sidecar: Debian barman %s)",
		objectstore.Version, BackupBucket, barman.Version, s.Images["barman-sidecar"].Version)
	return nil
}

// startObjectStore starts the object store's host daemon with the root keys creds, unless it runs.
func (s *Stack) startObjectStore(ctx context.Context, creds objectstore.Credentials) error {
	data, err := s.Cluster.DaemonDir(objectstore.Name)
	if err != nil {
		return err
	}
	argv := append([]string{s.Bin["versitygw"]}, objectstore.Args(s.Cluster.DaemonAddr(objectstore.Port), data)...)
	return s.Cluster.StartDaemon(ctx, objectstore.Name, objectstore.Port, objectstore.Env(creds), argv...)
}

// StopObjectStore kills the object store's daemon (an outage of production's object storage: every request
// refused); its objects stay. StartObjectStore brings it back with the same keys and data.
func (s *Stack) StopObjectStore() error {
	if s.backupCreds == (objectstore.Credentials{}) || s.Cluster == nil {
		return errors.New("no object store deployed by the harness")
	}
	return s.Cluster.StopDaemon(objectstore.Name)
}

// StartObjectStore starts the object store stopped by StopObjectStore and waits until it accepts connections.
func (s *Stack) StartObjectStore(ctx context.Context) error {
	if s.backupCreds == (objectstore.Credentials{}) || s.Cluster == nil {
		return errors.New("no object store deployed by the harness")
	}
	if s.Bin["versitygw"] == "" {
		return errors.New("versitygw not built in this run (backups not deployed by it)")
	}
	return s.startObjectStore(ctx, s.backupCreds)
}

// objectStoreCredentials are the root keys of the running object store, or new ones.
func (s *Stack) objectStoreCredentials(ctx context.Context) (objectstore.Credentials, error) {
	cs, err := s.Clientset()
	if err != nil {
		return objectstore.Credentials{}, err
	}
	sec, err := cs.CoreV1().Secrets(objectstore.Namespace).Get(ctx, objectstore.RootSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return objectstore.NewCredentials()
	}
	if err != nil {
		return objectstore.Credentials{}, err
	}
	c := objectstore.Credentials{AccessKeyID: string(sec.Data[objectstore.AccessKey]),
		SecretAccessKey: string(sec.Data[objectstore.SecretKey])}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return c, fmt.Errorf("the object store's Secret %s/%s lacks %s or %s", objectstore.Namespace, objectstore.RootSecret,
			objectstore.AccessKey, objectstore.SecretKey)
	}
	return c, nil
}

// pluginTLS are the plugin's and the operator's TLS Secrets: those in the cluster, or new ones (a new CA in
// the cluster's directory). New certificates under a running plugin would break its handshakes until it restarts.
func (s *Stack) pluginTLS(ctx context.Context) ([]*unstructured.Unstructured, error) {
	cs, err := s.Clientset()
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, name := range []string{barman.ServerSecret, barman.ClientSecret} {
		sec, err := cs.CoreV1().Secrets(barman.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return barman.TLSSecrets(filepath.Join(s.dir(), "barman-tls"))
		}
		if err != nil {
			return nil, err
		}
		data := map[string]any{}
		for k, v := range sec.Data {
			data[k] = base64.StdEncoding.EncodeToString(v)
		}
		out = append(out, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret", "type": string(sec.Type),
			"metadata": map[string]any{"name": name, "namespace": barman.Namespace},
			"data":     data,
		}})
	}
	return out, nil
}

// BackupCredentialsSecret is Secret backup-s3-credentials for the databases' namespace (what production's
// secret store provides); nil where the harness deployed no object store (an attached cluster).
func (s *Stack) BackupCredentialsSecret() *unstructured.Unstructured {
	if s.backupCreds == (objectstore.Credentials{}) {
		return nil
	}
	return objectstore.CredentialsSecret(txmesh.Namespace, BackupSecret, s.backupCreds)
}

// ObjectStore is an S3 client of the cluster's object store, reached at the host daemon's address, with the
// root keys.
func (s *Stack) ObjectStore(context.Context) (*minio.Client, error) {
	if s.backupCreds == (objectstore.Credentials{}) || s.Cluster == nil {
		return nil, errors.New("no object store deployed by the harness")
	}
	return minio.New(s.Cluster.DaemonAddr(objectstore.Port), &minio.Options{
		Creds:        credentials.NewStaticV4(s.backupCreds.AccessKeyID, s.backupCreds.SecretAccessKey, ""),
		Region:       objectstore.Region,
		BucketLookup: minio.BucketLookupPath,
	})
}

// makeBucket creates BackupBucket unless it exists, retrying while the host cannot reach the Service yet.
func (s *Stack) makeBucket(ctx context.Context) error {
	c, err := s.ObjectStore(ctx)
	if err != nil {
		return err
	}
	var last error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := c.BucketExists(rctx, BackupBucket)
		if err == nil && !ok {
			err = c.MakeBucket(rctx, BackupBucket, minio.MakeBucketOptions{Region: objectstore.Region})
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	return fmt.Errorf("bucket %s at the object store's Service, from the host: %w", BackupBucket, last)
}

// EmptyBackups removes every object under the databases' prefixes of BackupBucket: the archive of a cluster
// that no longer exists. A new Cluster of the same name refuses to archive into a non-empty destination
// (barman-cloud-check-wal-archive), as production's would; it needs an empty path or another serverName.
func (s *Stack) EmptyBackups(ctx context.Context) (int, error) {
	c, err := s.ObjectStore(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, db := range BackupDatabases {
		var names []string
		for o := range c.ListObjects(ctx, BackupBucket, minio.ListObjectsOptions{Prefix: db + "/", Recursive: true}) {
			if o.Err != nil {
				return n, fmt.Errorf("list %s/%s: %w", BackupBucket, db, o.Err)
			}
			names = append(names, o.Key)
		}
		for _, name := range names {
			if err := c.RemoveObject(ctx, BackupBucket, name, minio.RemoveObjectOptions{}); err != nil {
				return n, fmt.Errorf("remove %s: %w", name, err)
			}
			n++
		}
	}
	return n, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// BackupObjects counts the objects under a prefix of BackupBucket (e.g. "bank-db/") and their bytes.
func (s *Stack) BackupObjects(ctx context.Context, prefix string) (n int, size int64, err error) {
	c, err := s.ObjectStore(ctx)
	if err != nil {
		return 0, 0, err
	}
	for o := range c.ListObjects(ctx, BackupBucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return n, size, o.Err
		}
		n++
		size += o.Size
	}
	return n, size, nil
}
