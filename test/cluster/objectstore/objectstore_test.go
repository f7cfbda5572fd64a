package objectstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// The object store's manifests: a restricted namespace, the root keys' Secret before the Deployment that reads
// them, a volume claim, one non-root replica started with Args over the volume, probed on /health, and the
// Service at URL.
func TestObjectsRender(t *testing.T) {
	creds := Credentials{AccessKeyID: "AKTEST", SecretAccessKey: "secret-test"}
	objs, err := Objects("txmesh.local/versitygw:"+Version, creds)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		if o.GetKind() != "Namespace" && o.GetNamespace() != Namespace {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	if got := strings.Join(kinds, ","); got != "Namespace,Secret,PersistentVolumeClaim,Deployment,Service" {
		t.Errorf("objects %s", got)
	}
	if l := objs[0].GetLabels(); objs[0].GetName() != Namespace || l["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s labels %v", objs[0].GetName(), l)
	}
	s := manifests.Find(objs, "Secret", RootSecret)
	data, _, _ := unstructured.NestedStringMap(s.Object, "stringData")
	if data[AccessKey] != creds.AccessKeyID || data[SecretKey] != creds.SecretAccessKey {
		t.Errorf("root Secret %v", data)
	}

	d := manifests.Find(objs, "Deployment", Name)
	c := manifests.FirstContainer(d)
	if c["image"] != "txmesh.local/versitygw:"+Version {
		t.Errorf("image %v", c["image"])
	}
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	if !slices.Equal(args, Args(":7070", "/data")) {
		t.Errorf("args %v, want %v", args, Args(":7070", "/data"))
	}
	env := map[string]string{}
	envs, _, _ := unstructured.NestedSlice(c, "env")
	for _, e := range envs {
		m := e.(map[string]any)
		ref, _, _ := unstructured.NestedString(m, "valueFrom", "secretKeyRef", "name")
		key, _, _ := unstructured.NestedString(m, "valueFrom", "secretKeyRef", "key")
		env[m["name"].(string)] = ref + "/" + key
	}
	if env["ROOT_ACCESS_KEY_ID"] != RootSecret+"/"+AccessKey || env["ROOT_SECRET_ACCESS_KEY"] != RootSecret+"/"+SecretKey {
		t.Errorf("key variables %v", env)
	}
	path, _, _ := unstructured.NestedString(c, "readinessProbe", "httpGet", "path")
	if path != "/health" || !slices.Contains(args, "/health") {
		t.Errorf("readiness probe path %q, args %v", path, args)
	}
	mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	if len(mounts) != 1 || mounts[0].(map[string]any)["mountPath"] != "/data" {
		t.Errorf("volume mounts %v", mounts)
	}
	var claim string
	vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
	if len(vols) == 1 {
		claim, _, _ = unstructured.NestedString(vols[0].(map[string]any), "persistentVolumeClaim", "claimName")
	}
	if claim != Name || manifests.Find(objs, "PersistentVolumeClaim", Name) == nil {
		t.Errorf("data volume claim %q", claim)
	}
	psc, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "securityContext")
	sc, _ := c["securityContext"].(map[string]any)
	if psc["runAsNonRoot"] != true || fmt.Sprint(psc["runAsUser"]) != "65532" || sc["allowPrivilegeEscalation"] != false ||
		sc["readOnlyRootFilesystem"] != true {
		t.Errorf("security contexts: pod %v, container %v", psc, sc)
	}
	sum := sha256.Sum256([]byte(creds.AccessKeyID + "\x00" + creds.SecretAccessKey))
	ann, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "annotations")
	if ann["txmesh.local/credentials-sha256"] != hex.EncodeToString(sum[:]) {
		t.Errorf("pod template annotations %v", ann)
	}
	port, _, _ := unstructured.NestedSlice(manifests.Find(objs, "Service", Name).Object, "spec", "ports")
	if len(port) != 1 || fmt.Sprint(port[0].(map[string]any)["port"]) != fmt.Sprint(Port) || URL != "http://"+Name+"."+Namespace+":7070" {
		t.Errorf("Service ports %v, URL %s", port, URL)
	}

	if _, err := Objects("x:y", Credentials{AccessKeyID: "a"}); err == nil {
		t.Error("rendered without a secret key")
	}
}

func TestNewCredentials(t *testing.T) {
	a, err := NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(a.AccessKeyID) < 16 || len(a.SecretAccessKey) < 32 {
		t.Errorf("credentials %+v %+v", a, b)
	}
}
