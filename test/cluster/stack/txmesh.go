package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/istio"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

func (s *Stack) logf(format string, a ...any) { fmt.Fprintf(s.log, "deploy: "+format+"\n", a...) }

// PreUpgradeServerName is where bank-db archives while it runs cnpg.UpgradeFrom (Options.BankDBUpgrade): the
// upgrade moves it to the manifests' serverName (the cluster's name), so that the new system's WAL and base
// backups never mix with the old one's (CloudNativePG 1.30, docs/src/postgres_upgrades.md, "Backup and WAL
// Archive Considerations"), and the old archive stays for a recovery to before the upgrade.
const PreUpgradeServerName = "bank-db-pg17"

// BankDBPatch is the patch (for Deploy, DeployOnly) that runs bank-db on image and, unless serverName is "",
// archives it under serverName instead of the manifests' default.
func BankDBPatch(image, serverName string) map[string]string {
	p := "- op: replace\n  path: /spec/imageName\n  value: " + image + "\n"
	if serverName != "" {
		p += "- op: add\n  path: /spec/plugins/0/parameters/serverName\n  value: " + serverName + "\n"
	}
	return map[string]string{"Cluster/bank-db": p}
}

// deployTxmesh renders kustomize/overlays/e2e with the image tag, creates the apps' TLS Secrets, applies it
// and waits for the databases, the seed Job and both services.
func (s *Stack) deployTxmesh(ctx context.Context, tag string) error {
	var patches map[string]string
	if s.bankDBUpgrade {
		patches = BankDBPatch(cnpg.UpgradeFrom.Ref(), PreUpgradeServerName)
	}
	objs, err := s.render(tag, patches)
	if err != nil {
		return err
	}
	if s.Meshed() {
		// mesh/ made the namespace (injection on, Pod Security), as Flux's configs layer does before the apps;
		// Istio's mTLS replaces the apps' own, so no TLS Secrets.
		cs, err := s.Clientset()
		if err != nil {
			return err
		}
		if err := istio.CheckInjected(ctx, cs, txmesh.Namespace); err != nil {
			return err
		}
		if err := s.Apply.Apply(ctx, objs); err != nil {
			return err
		}
		return s.WaitHealthy(ctx, 10*time.Minute)
	}
	tlsDir := filepath.Join(s.dir(), "apps-tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return err
	}
	var secrets []*unstructured.Unstructured
	if s.TLS, secrets, err = txmesh.AppTLS(tlsDir, txmesh.Namespace); err != nil {
		return err
	}
	if b := s.BackupCredentialsSecret(); b != nil {
		secrets = append(secrets, b)
	}
	// The namespace first (the overlay's, with its Pod Security labels), then the Secrets the pods mount.
	var ns, rest []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			ns = append(ns, o)
		} else {
			rest = append(rest, o)
		}
	}
	if err := s.Apply.Apply(ctx, append(ns, secrets...)); err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, rest); err != nil {
		return err
	}
	return s.WaitHealthy(ctx, 10*time.Minute)
}

// EmptyTxmesh deletes namespace txmesh — the apps, their databases and volumes, everything deployed — waits
// until it is gone, empties the databases' archives (BackupBucket: the new Clusters archive there anew), and
// creates it again holding only what a cluster gets before GitOps runs: the namespace (its Pod Security
// labels), the apps' TLS Secrets and the object store's keys (production's come from its secret store).
func (s *Stack) EmptyTxmesh(ctx context.Context) error {
	cs, err := s.Clientset()
	if err != nil {
		return err
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, txmesh.Namespace, metav1.DeleteOptions{}); err != nil {
		return err
	}
	for deadline := time.Now().Add(8 * time.Minute); ; { // 33–225 s measured
		_, err := cs.CoreV1().Namespaces().Get(ctx, txmesh.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s still there 8 min after its deletion", txmesh.Namespace)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if b := s.BackupCredentialsSecret(); b != nil {
		n, err := s.EmptyBackups(ctx)
		if err != nil {
			return err
		}
		s.logf("emptied the databases' archives in %s: %d objects", BackupBucket, n)
	}
	objs, err := s.render(txmesh.Overlay, nil)
	if err != nil {
		return err
	}
	_, secrets, err := txmesh.AppTLS(filepath.Join(s.dir(), "apps-tls"), txmesh.Namespace)
	if err != nil {
		return err
	}
	if b := s.BackupCredentialsSecret(); b != nil {
		secrets = append(secrets, b)
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			secrets = append([]*unstructured.Unstructured{o}, secrets...)
		}
	}
	return s.Apply.Apply(ctx, secrets)
}

// WaitHealthy waits for both CloudNativePG clusters, the seed Job and both services (txmesh.Wait): Flagger's
// -primary Deployments once Flagger owns the apps (after cd-bootstrap, or from the start in the mesh).
func (s *Stack) WaitHealthy(ctx context.Context, d time.Duration) error {
	t := time.Now()
	if err := txmesh.Wait(ctx, s.Apply, s.handedToFlux || s.Meshed(), d); err != nil {
		return err
	}
	s.logf("txmesh healthy in %s: bank-db and store-db (3 instances each), bank-seed done, bank and store available",
		time.Since(t).Round(time.Second))
	return nil
}

// Deploy applies the overlay again with the image at tag and, optionally, JSON patches by target
// ("Kind/name" → RFC 6902 patch in YAML): a release as a GitOps controller would apply it. It does not wait.
// Once Flux runs (HandedToFlux), it renders the overlay Flux applies, so that a hand change keeps the
// canaries and leaves Flagger's Services alone.
func (s *Stack) Deploy(ctx context.Context, tag string, patches map[string]string) error {
	objs, err := s.render(tag, patches)
	if err != nil {
		return err
	}
	return s.Apply.Apply(ctx, objs)
}

// DeployOnly is Deploy restricted to one object ("Kind/name"): a change to that object alone, the rest of the
// deployment left as it is (e.g. a VirtualService's fault, without re-applying the Deployments Flagger is
// analysing). It fails when the overlay renders no such object.
func (s *Stack) DeployOnly(ctx context.Context, tag string, patches map[string]string, target string) error {
	objs, err := s.render(tag, patches)
	if err != nil {
		return err
	}
	kind, name, _ := strings.Cut(target, "/")
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return s.Apply.Apply(ctx, []*unstructured.Unstructured{o})
		}
	}
	return fmt.Errorf("the overlay renders no %s", target)
}

// Rebuild builds the txmesh image from the checkout with another tag and pushes it to the cluster's registry.
func (s *Stack) Rebuild(ctx context.Context, tag string) (images.Image, error) {
	img, err := txmesh.Image(ctx, s.builder, s.Repo, tag)
	if err != nil {
		return img, err
	}
	if err := s.push(ctx, img); err != nil {
		return img, err
	}
	return s.pulled(img), nil
}

// HandedToFlux records that Flux and Flagger own the deployment now (cd-bootstrap ran): Deploy renders
// txmesh.FluxOverlay and WaitHealthy waits for the Flagger primaries.
func (s *Stack) HandedToFlux() { s.handedToFlux = true }
