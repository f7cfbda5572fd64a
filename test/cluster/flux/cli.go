package flux

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// CLIVersion is the flux CLI that cd-bootstrap runs: the release line of the controllers above (2.9: source-
// and kustomize-controller 1.9, the image controllers 1.2). docs/cd.md's `flux bootstrap` lines name it.
const CLIVersion = "v2.9.5"

// offlineManifests stands in for cmd/flux/manifests/*.yaml, which upstream's `make build` downloads from the
// controllers' GitHub releases before compiling (//go:embed): unreachable here. The CLI built with it installs
// only from --manifests; any run without that flag fails on this file instead of installing a guess.
const offlineManifests = `# txmesh e2e: no embedded Flux manifests (built offline); run flux with --manifests=<dir>.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - does-not-exist-pass-manifests.yaml
`

// CLI is the flux command built from github.com/fluxcd/flux2/v2 at CLIVersion, stamped as upstream's Makefile
// does (-X main.VERSION), with the embedded manifests replaced by offlineManifests.
func CLI() gobuild.Component {
	return gobuild.Component{
		Name:     "flux-cli",
		Module:   "github.com/fluxcd/flux2/v2",
		Version:  CLIVersion,
		Packages: []string{"github.com/fluxcd/flux2/v2/cmd/flux"},
		GoLine:   "1.26.0",
		Replace:  map[string]string{"gopkg.in/yaml.v3": "gopkg.in/yaml.v3 v3.0.1"},
		Ldflags:  "-X main.VERSION=" + strings.TrimPrefix(CLIVersion, "v"),
		Expect:   5 * time.Minute,
		PatchKey: "offline-manifests",
		Patch: func(dir string) error {
			d := filepath.Join(dir, "cmd", "flux", "manifests")
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(d, "kustomization.yaml"), []byte(offlineManifests), 0o644)
		},
	}
}

// ComponentsDir writes the controllers' objects (Objects: their modules' own kustomize bases, the local
// images) into dir as components.yaml with a kustomization.yaml: what `flux bootstrap --manifests=dir`
// builds, commits as flux-system/gotk-components.yaml and applies.
func ComponentsDir(dir string, controllers ...Controller) error {
	objs, err := Objects(controllers...)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "components.yaml"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - components.yaml\n"
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644)
}

// BootstrapArgs is the `flux bootstrap git` command line of the e2e: the Git server's plain-HTTP URL with
// basic auth (the server accepts any; Flux stores them in the flux-system Secret and its controllers send
// them), the path of flux/clusters/e2e, every controller flux/clusters/e2e needs, the components from
// manifestsDir. interval is the GitRepository's (short in the e2e).
func BootstrapArgs(kubeconfig, url, branch, path, manifestsDir string, interval time.Duration) []string {
	return []string{"bootstrap", "git",
		"--kubeconfig=" + kubeconfig,
		"--url=" + url, "--branch=" + branch, "--path=" + path,
		"--allow-insecure-http=true", "--token-auth=true", "--username=flux", "--password=txmesh-e2e",
		"--components=source-controller,kustomize-controller",
		"--components-extra=image-reflector-controller,image-automation-controller",
		"--manifests=" + manifestsDir,
		"--interval=" + interval.String(),
		"--author-name=txmesh e2e", "--author-email=e2e@txmesh.invalid",
		"--silent", "--force", "--timeout=10m",
	}
}

// Version runs `flux --version` and returns its version (e.g. "2.9.5").
func Version(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", bin, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "", fmt.Errorf("%s --version: no output", bin)
	}
	return f[len(f)-1], nil
}
