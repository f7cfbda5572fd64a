// Package build compiles the upstream components of the throwaway cluster from their Go modules, at pinned
// versions, through a wrapper module each (so an upstream `replace` block can be repeated and nothing of
// theirs reaches txmesh's own go.mod), and caches the binaries by version outside the checkout.
package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Component is one upstream Go module and the commands built from it.
type Component struct {
	Name     string   // cache key prefix, e.g. "kubernetes"
	Module   string   // e.g. "k8s.io/kubernetes"
	Version  string   // e.g. "v1.32.13"
	Packages []string // main packages; each binary is named after its last path element
	// GoLine and GoDebug repeat the upstream go.mod's `go` and `godebug` lines, so the binaries keep the
	// upstream's language semantics and runtime defaults.
	GoLine  string
	GoDebug []string
	Replace map[string]string // module path → "path version", as the upstream go.mod needs
	Ldflags string
	// Expect is a rough cold build time on two cores, printed so that a cold start does not look hung.
	Expect time.Duration
}

// KubernetesVersion is the one version of every Kubernetes component the cluster runs.
const KubernetesVersion = "v1.32.13"

// Kubernetes: the staging modules are separate modules that upstream replaces with directories; the wrapper
// pins each to its published version. k8s.io/endpointslice v0.32.13 is refused by the module proxy, its
// v0.32.12 is identical in content for our purpose (no API change within a patch line).
func kubernetes() Component {
	staging := []string{"api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
		"cloud-provider", "cluster-bootstrap", "code-generator", "component-base", "component-helpers",
		"controller-manager", "cri-api", "cri-client", "csi-translation-lib", "dynamic-resource-allocation",
		"endpointslice", "externaljwt", "kms", "kube-aggregator", "kube-controller-manager", "kube-proxy",
		"kube-scheduler", "kubectl", "kubelet", "metrics", "mount-utils", "pod-security-admission",
		"sample-apiserver", "sample-cli-plugin", "sample-controller"}
	minor := strings.TrimPrefix(KubernetesVersion, "v1.")
	rep := map[string]string{}
	for _, m := range staging {
		v := "v0." + minor
		if m == "endpointslice" {
			v = "v0.32.12"
		}
		rep["k8s.io/"+m] = "k8s.io/" + m + " " + v
	}
	var ld []string
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld = append(ld, "-X "+p+".gitVersion="+KubernetesVersion, "-X "+p+".gitMajor=1",
			"-X "+p+".gitMinor=32", "-X "+p+".gitTreeState=clean")
	}
	var pkgs []string
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
		"kubelet", "kubectl"} {
		pkgs = append(pkgs, "k8s.io/kubernetes/cmd/"+c)
	}
	return Component{Name: "kubernetes", Module: "k8s.io/kubernetes", Version: KubernetesVersion, Packages: pkgs,
		GoLine: "1.23.0", GoDebug: []string{"default=go1.23"}, Replace: rep, Ldflags: strings.Join(ld, " "),
		Expect: 10 * time.Minute}
}

// Pinned versions of the add-ons (CloudNativePG matches what kustomize/ and flux/ pin).
const (
	CoreDNSVersion   = "v1.12.4"
	CNPGVersion      = "v1.30.0"
	LocalPathVersion = "v0.0.30"
)

// Components returns every component the cluster needs, in build order.
func Components() []Component {
	return []Component{
		kubernetes(),
		{Name: "coredns", Module: "github.com/coredns/coredns", Version: CoreDNSVersion,
			Packages: []string{"github.com/coredns/coredns"},
			Ldflags:  "-X github.com/coredns/coredns/coremain.GitCommit=" + CoreDNSVersion, Expect: 4 * time.Minute},
		{Name: "cloudnative-pg", Module: "github.com/cloudnative-pg/cloudnative-pg", Version: CNPGVersion,
			Packages: []string{"github.com/cloudnative-pg/cloudnative-pg/cmd/manager",
				"github.com/cloudnative-pg/cloudnative-pg/cmd/kubectl-cnpg"},
			Ldflags: "-X github.com/cloudnative-pg/cloudnative-pg/pkg/versions.buildVersion=" +
				strings.TrimPrefix(CNPGVersion, "v") + " -X github.com/cloudnative-pg/cloudnative-pg/pkg/versions.buildCommit=" +
				CNPGVersion, Expect: 6 * time.Minute},
		{Name: "local-path-provisioner", Module: "github.com/rancher/local-path-provisioner",
			Version: LocalPathVersion, Packages: []string{"github.com/rancher/local-path-provisioner"},
			Expect: 3 * time.Minute},
	}
}

// CacheDir is where built things live: $TXMESH_CACHE, else ~/.cache/txmesh/cluster.
func CacheDir() (string, error) {
	if d := os.Getenv("TXMESH_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the build cache (set TXMESH_CACHE): %w", err)
	}
	return filepath.Join(home, ".cache", "txmesh", "cluster"), nil
}

// Binaries maps a binary name to its path in the cache.
type Binaries map[string]string

// All builds (or finds in the cache) every component and returns all binaries by name.
func All(ctx context.Context, cache string, log io.Writer) (Binaries, error) {
	out := Binaries{}
	for _, c := range Components() {
		bins, err := Ensure(ctx, cache, c, log)
		if err != nil {
			return nil, err
		}
		for k, v := range bins {
			out[k] = v
		}
	}
	return out, nil
}

// Ensure returns the component's binaries, building them first when the cache lacks them.
func Ensure(ctx context.Context, cache string, c Component, log io.Writer) (Binaries, error) {
	dir := filepath.Join(cache, "bin", c.Name+"-"+c.Version)
	bins := Binaries{}
	for _, p := range c.Packages {
		name := filepath.Base(p)
		bins[name] = filepath.Join(dir, name)
	}
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return bins, nil
	}
	if _, err := exec.LookPath("go"); err != nil {
		return nil, errors.New("the go command is not on PATH: install Go 1.26 (README: Prerequisites)")
	}
	start := time.Now()
	fmt.Fprintf(log, "build: %s %s (%s) — not cached, building from the module proxy (about %s cold on 2 cores)\n",
		c.Name, c.Version, strings.Join(names(bins), ", "), c.Expect)
	src := filepath.Join(cache, "src", c.Name+"-"+c.Version)
	if err := writeWrapper(src, c); err != nil {
		return nil, err
	}
	if err := goCmd(ctx, src, log, nil, "mod", "tidy"); err != nil {
		return nil, moduleError(c, err)
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	args := []string{"build", "-trimpath", "-ldflags", strings.TrimSpace("-s -w " + c.Ldflags), "-o", tmp + "/"}
	args = append(args, c.Packages...)
	stop := ticker(log, c.Name, start)
	err := goCmd(ctx, src, log, []string{"CGO_ENABLED=0"}, args...)
	stop()
	if err != nil {
		return nil, fmt.Errorf("build %s %s: %w", c.Name, c.Version, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "build: %s %s done in %s\n", c.Name, c.Version, time.Since(start).Round(time.Second))
	return bins, nil
}

func names(b Binaries) []string {
	var n []string
	for k := range b {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// writeWrapper writes a module that requires the component and imports its commands (behind a build tag,
// so that `go mod tidy` records every dependency they need).
func writeWrapper(dir string, c Component) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "module txmesh.local/build/%s\n\n", c.Name)
	goLine := c.GoLine
	if goLine == "" {
		goLine = "1.26.4"
	}
	fmt.Fprintf(&b, "go %s\n\n", goLine)
	for _, d := range c.GoDebug {
		fmt.Fprintf(&b, "godebug %s\n", d)
	}
	fmt.Fprintf(&b, "\nrequire %s %s\n", c.Module, c.Version)
	if len(c.Replace) > 0 {
		keys := make([]string, 0, len(c.Replace))
		for k := range c.Replace {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("\nreplace (\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "\t%s => %s\n", k, c.Replace[k])
		}
		b.WriteString(")\n")
	}
	// go.mod is rewritten only when it differs, so a warm cache keeps tidy's result.
	if old, err := os.ReadFile(filepath.Join(dir, "go.mod.in")); err != nil || string(old) != b.String() {
		if err := os.WriteFile(filepath.Join(dir, "go.mod.in"), []byte(b.String()), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	var t strings.Builder
	t.WriteString("//go:build tools\n\npackage tools\n\nimport (\n")
	for _, p := range c.Packages {
		fmt.Fprintf(&t, "\t_ %q\n", p)
	}
	t.WriteString(")\n")
	return os.WriteFile(filepath.Join(dir, "tools.go"), []byte(t.String()), 0o644)
}

func goCmd(ctx context.Context, dir string, log io.Writer, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	// GOFLAGS from the caller (e.g. -mod=vendor) must not leak into the wrapper module.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	cmd.Env = append(cmd.Env, env...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if len(tail) > 4000 {
			tail = "…" + tail[len(tail)-4000:]
		}
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args[:1], " "), err, tail)
	}
	return nil
}

func moduleError(c Component, err error) error {
	if strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "404") ||
		strings.Contains(err.Error(), "not available") {
		return fmt.Errorf("the module proxy refuses a module that %s %s needs (see the line with 403/404 below); "+
			"pin a version the proxy serves in test/cluster/build: %w", c.Module, c.Version, err)
	}
	return fmt.Errorf("resolve %s %s: %w", c.Module, c.Version, err)
}

// ticker prints a line every 30 s while a long build runs.
func ticker(log io.Writer, name string, start time.Time) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(log, "build: %s … still compiling (%s)\n", name, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

// ModuleDir is the component's module in the module cache (its manifests and sources), downloaded if needed.
func ModuleDir(ctx context.Context, cache string, c Component) (string, error) {
	src := filepath.Join(cache, "src", c.Name+"-"+c.Version)
	if err := writeWrapper(src, c); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", c.Module+"@"+c.Version)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", moduleError(c, fmt.Errorf("go mod download: %w: %s", err, out))
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", err
	}
	if info.Error != "" || info.Dir == "" {
		return "", moduleError(c, errors.New(info.Error))
	}
	return info.Dir, nil
}

// Find returns the named component.
func Find(name string) Component {
	for _, c := range Components() {
		if c.Name == name {
			return c
		}
	}
	panic("unknown component " + name)
}
