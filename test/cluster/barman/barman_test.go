package barman

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/certs"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

const (
	testPlugin  = "txmesh.local/plugin-barman-cloud:" + Version
	testSidecar = "txmesh.local/plugin-barman-cloud-sidecar:" + Version + "-forky"
)

func render(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gobuild.ModuleDir(context.Background(), cache, Component())
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := TLSSecrets(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(dir, testPlugin, testSidecar, secrets)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// The plugin's release manifests with the local images and the harness's Secrets instead of cert-manager:
// everything in cnpg-system, the TLS Secrets first, the ObjectStore CRD, the Deployment running `operator` with
// the mounted key pairs, the sidecar image in the generated Secret it reads, and the Service the operator
// discovers the plugin by.
func TestObjectsRender(t *testing.T) {
	objs := render(t)
	var kinds []string
	for i, o := range objs {
		kinds = append(kinds, o.GetKind()+"/"+o.GetName())
		if strings.HasPrefix(o.GetAPIVersion(), "cert-manager.io/") {
			t.Errorf("cert-manager object left: %s %s", o.GetKind(), o.GetName())
		}
		if ns := o.GetNamespace(); ns != "" && ns != Namespace {
			t.Errorf("%s %s in namespace %q, want %s", o.GetKind(), o.GetName(), ns, Namespace)
		}
		if i < 2 && (o.GetKind() != "Secret" || (o.GetName() != ServerSecret && o.GetName() != ClientSecret)) {
			t.Errorf("object %d is %s %s, want the TLS Secrets first", i, o.GetKind(), o.GetName())
		}
	}
	t.Logf("rendered: %s", strings.Join(kinds, " "))
	if !manifests.CRDServes(objs, "barmancloud.cnpg.io/v1", "ObjectStore") {
		t.Error("no CRD serving barmancloud.cnpg.io/v1 ObjectStore")
	}

	d := manifests.Find(objs, "Deployment", Name)
	if d == nil {
		t.Fatal("no Deployment " + Name)
	}
	c := manifests.FirstContainer(d)
	if c["image"] != testPlugin || c["imagePullPolicy"] != "IfNotPresent" {
		t.Errorf("plugin container image %v, pull policy %v", c["image"], c["imagePullPolicy"])
	}
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	for _, a := range []string{"operator", "--server-cert=/server/tls.crt", "--server-key=/server/tls.key",
		"--client-cert=/client/tls.crt", "--server-address=:9090"} {
		if !slices.Contains(args, a) {
			t.Errorf("plugin args %v lack %s", args, a)
		}
	}
	vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
	mounted := map[string]string{}
	for _, v := range vols {
		name, _, _ := unstructured.NestedString(v.(map[string]any), "name")
		secret, _, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName")
		mounted[name] = secret
	}
	if mounted["server"] != ServerSecret || mounted["client"] != ClientSecret {
		t.Errorf("volumes %v, want server=%s client=%s", mounted, ServerSecret, ClientSecret)
	}
	// The operator reconciles a Cluster that names the plugin only while it reaches it: the plugin leaves a
	// lost node in 10 s (not the default 300) and is Ready 1 s after it listens (not 10).
	if n := number(d.Object, "spec", "replicas"); n != 1 {
		t.Errorf("replicas %d, want 1: only the holder of the leader Lease serves, another is never Ready", n)
	}
	tols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "tolerations")
	for _, key := range []string{"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} {
		var secs int64 = -1
		for _, x := range tols {
			if m := x.(map[string]any); m["key"] == key && m["effect"] == "NoExecute" {
				secs = number(m, "tolerationSeconds")
			}
		}
		if secs != 10 {
			t.Errorf("toleration of %s: %d s, want 10", key, secs)
		}
	}
	delay, period := number(c, "readinessProbe", "initialDelaySeconds"), number(c, "readinessProbe", "periodSeconds")
	if delay != 1 || period != 1 {
		t.Errorf("readiness probe after %d s every %d s, want 1 and 1", delay, period)
	}
	// Evicted, it serves on while the operator switches a drained node's primaries over.
	if s, g := number(c, "lifecycle", "preStop", "sleep", "seconds"), number(d.Object, "spec", "template", "spec", "terminationGracePeriodSeconds"); s != 20 || g <= s {
		t.Errorf("preStop sleep %d s within a grace period of %d s, want 20 s within more", s, g)
	}
	psc, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "securityContext")
	sc, _ := c["securityContext"].(map[string]any)
	if psc["runAsNonRoot"] != true || sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true {
		t.Errorf("security contexts: pod %v, container %v", psc, sc)
	}

	// SIDECAR_IMAGE from the generated Secret (its name carries kustomize's hash suffix).
	var ref string
	envs, _, _ := unstructured.NestedSlice(c, "env")
	for _, e := range envs {
		if n, _, _ := unstructured.NestedString(e.(map[string]any), "name"); n == "SIDECAR_IMAGE" {
			ref, _, _ = unstructured.NestedString(e.(map[string]any), "valueFrom", "secretKeyRef", "name")
		}
	}
	s := manifests.Find(objs, "Secret", ref)
	if s == nil {
		t.Fatalf("SIDECAR_IMAGE comes from Secret %q, which is not rendered", ref)
	}
	b64, _, _ := unstructured.NestedString(s.Object, "data", "SIDECAR_IMAGE")
	if raw, err := base64.StdEncoding.DecodeString(b64); err != nil || string(raw) != testSidecar {
		t.Errorf("SIDECAR_IMAGE %q (%v), want %s", raw, err, testSidecar)
	}

	svc := manifests.Find(objs, "Service", Name)
	if svc == nil {
		t.Fatal("no Service " + Name)
	}
	ann := svc.GetAnnotations()
	if ann["cnpg.io/pluginServerSecret"] != ServerSecret || ann["cnpg.io/pluginClientSecret"] != ClientSecret ||
		ann["cnpg.io/pluginPort"] != "9090" || svc.GetLabels()["cnpg.io/pluginName"] != PluginName {
		t.Errorf("Service annotations %v labels %v", ann, svc.GetLabels())
	}
}

func TestObjectsNeedTheTLSSecrets(t *testing.T) {
	if _, err := Objects(t.TempDir(), testPlugin, testSidecar, nil); err == nil {
		t.Fatal("rendered without the TLS Secrets")
	}
}

// secretData returns a Secret's stringData.
func secretData(t *testing.T, objs []*unstructured.Unstructured, name string) map[string]string {
	t.Helper()
	s := manifests.Find(objs, "Secret", name)
	if s == nil {
		t.Fatalf("no Secret %s", name)
	}
	d, _, _ := unstructured.NestedStringMap(s.Object, "stringData")
	return d
}

// pluginServer is the plugin's TLS, as cnpg-i-machinery's pluginhelper/http server sets it up from the mounted
// files: its key pair, and the client certificate file as the pool of trusted client certificates.
func pluginServer(t *testing.T, server, client map[string]string) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair([]byte(server["tls.crt"]), []byte(server["tls.key"]))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(client["tls.crt"])) {
		t.Fatal("client tls.crt: no certificate")
	}
	return &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, Certificates: []tls.Certificate{pair},
		ClientCAs: pool, MinVersion: tls.VersionTLS13}
}

// operatorClient is CloudNativePG 1.30's side (internal/controller/plugin_controller.go): the client key pair,
// the server Secret's tls.crt as the roots, the Service's name as the server name.
func operatorClient(t *testing.T, server, client map[string]string, serverName string) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair([]byte(client["tls.crt"]), []byte(client["tls.key"]))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(server["tls.crt"])) {
		t.Fatal("server tls.crt: no certificate")
	}
	return &tls.Config{ServerName: serverName, RootCAs: pool, Certificates: []tls.Certificate{pair},
		MinVersion: tls.VersionTLS13}
}

// handshake runs one TLS 1.3 handshake over TCP on 127.0.0.1 and a byte each way; it returns the client's
// error, else the server's.
func handshake(t *testing.T, srv, cli *tls.Config) error {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			served <- err
			return
		}
		_, err = c.Write(b)
		served <- err
	}()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), cli)
	if err != nil {
		<-served
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return errors.Join(err, <-served)
	}
	return <-served
}

// The harness's Secrets carry a working mutual TLS between the operator and the plugin, configured exactly
// as both sides configure it; a client certificate of another CA, or a wrong server name, is refused.
func TestTLSSecretsMutualTLS(t *testing.T) {
	secrets, err := TLSSecrets(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	server, client := secretData(t, secrets, ServerSecret), secretData(t, secrets, ClientSecret)
	for _, s := range secrets {
		if s.Object["type"] != "kubernetes.io/tls" || s.GetNamespace() != Namespace {
			t.Errorf("Secret %s: type %v namespace %s", s.GetName(), s.Object["type"], s.GetNamespace())
		}
	}
	if err := handshake(t, pluginServer(t, server, client), operatorClient(t, server, client, Name)); err != nil {
		t.Fatalf("operator → plugin handshake: %v", err)
	}

	other, err := certs.NewCA(t.TempDir(), "another CA")
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := other.Issue(certs.Spec{Name: "intruder", CN: "barman-cloud-client", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	intruder := map[string]string{"tls.crt": readFile(t, crt), "tls.key": readFile(t, key)}
	if err := handshake(t, pluginServer(t, server, client), operatorClient(t, server, intruder, Name)); err == nil {
		t.Error("the plugin accepted a client certificate of another CA")
	}
	if err := handshake(t, pluginServer(t, server, client), operatorClient(t, server, client, "not-barman-cloud")); err == nil {
		t.Error("the operator accepted the plugin's certificate for another server name")
	}
	// The server certificate is not a client certificate: it cannot stand in for the operator's.
	if err := handshake(t, pluginServer(t, server, server), operatorClient(t, server, server, Name)); err == nil {
		t.Error("the server certificate was accepted as a client certificate")
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// number is an integer field of a rendered object, however the decoder typed it (-1 when absent).
func number(o map[string]any, path ...string) int64 {
	v, ok, _ := unstructured.NestedFieldNoCopy(o, path...)
	if !ok {
		return -1
	}
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}
