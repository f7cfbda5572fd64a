// Package gobuild compiles an upstream component of the throwaway cluster from its Go module, at a pinned
// version, through a wrapper module (so an upstream `replace` block can be repeated and nothing of theirs
// reaches txmesh's own go.mod), and caches the binaries by version outside the checkout.
//
// Cache layout, under CacheDir: bin/<name>-<version>[-<patch key>]/ holds the binaries and .complete (written
// last; the directory is renamed into place whole); src/<name>-<version>/ the wrapper module (go.mod.in,
// go.mod, tools.go, and upstream/ for a patched copy).
package gobuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Component is one upstream Go module and the commands built from it.
type Component struct {
	Name     string            // cache key prefix, e.g. "kubernetes"
	Module   string            // e.g. "k8s.io/kubernetes"
	Version  string            // e.g. "v1.32.13"
	Packages []string          // main packages; each binary is named after its last path element (or Names)
	Names    map[string]string // package → binary name, where the last path element is not the name
	// GoLine and GoDebug repeat the upstream go.mod's `go` and `godebug` lines, so the binaries keep the
	// upstream's language semantics and runtime defaults.
	GoLine  string
	GoDebug []string
	Replace map[string]string // module path → "path version", as the upstream go.mod needs
	Ldflags string
	// Expect is a rough cold build time on two cores, printed so that a cold start does not look hung.
	Expect time.Duration
	// Patch, when set, builds a patched copy of the module instead of the module: the module is copied out of
	// the module cache (whose files stay as downloaded) to src/<name>-<version>/upstream, Patch edits that
	// directory, and the wrapper replaces the module with it. PatchKey names the patch in the binaries'
	// cache directory: change it with the patch.
	Patch    func(dir string) error
	PatchKey string
}

// binName is the binary a package of c builds.
func (c Component) binName(pkg string) string {
	if n, ok := c.Names[pkg]; ok {
		return n
	}
	return filepath.Base(pkg)
}

// Key is the component's cache key: the name of its directory under bin/.
func (c Component) Key() string {
	if c.PatchKey != "" {
		return c.Name + "-" + c.Version + "-" + c.PatchKey
	}
	return c.Name + "-" + c.Version
}

func (c Component) binDir(cache string) string { return filepath.Join(cache, "bin", c.Key()) }

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

// Ensure returns the component's binaries, building them first when the cache lacks them.
func Ensure(ctx context.Context, cache string, c Component, log io.Writer) (Binaries, error) {
	dir := c.binDir(cache)
	bins := Binaries{}
	for _, p := range c.Packages {
		name := c.binName(p)
		bins[name] = filepath.Join(dir, name)
	}
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return bins, nil
	}
	// Another harness process (a second make, a test) may be building the same component: one builds, the
	// other waits and then finds it cached, instead of both writing the same directories.
	unlock, err := lock(ctx, dir+".lock", log, c.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
	if c.Patch != nil {
		mod, err := ModuleDir(ctx, cache, c)
		if err != nil {
			return nil, err
		}
		if err := copyModule(mod, filepath.Join(src, "upstream")); err != nil {
			return nil, err
		}
		if err := c.Patch(filepath.Join(src, "upstream")); err != nil {
			return nil, fmt.Errorf("patch %s %s: %w", c.Name, c.Version, err)
		}
		rep := map[string]string{c.Module: "./upstream"}
		for k, v := range c.Replace {
			rep[k] = v
		}
		c.Replace = rep
	}
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
	err = goCmd(ctx, src, log, []string{"CGO_ENABLED=0"}, args...)
	stop()
	if err != nil {
		return nil, fmt.Errorf("build %s %s: %w", c.Name, c.Version, err)
	}
	for _, p := range c.Packages {
		if name := c.binName(p); name != filepath.Base(p) {
			if err := os.Rename(filepath.Join(tmp, filepath.Base(p)), filepath.Join(tmp, name)); err != nil {
				return nil, err
			}
		}
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

// copyModule copies a module out of the module cache into dir (emptied first), writable.
func copyModule(moduleDir, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return filepath.WalkDir(moduleDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(moduleDir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
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
			"pin a version the proxy serves in the component's package under test/cluster: %w", c.Module, c.Version, err)
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

// Upstream reads the module's own go.mod and returns its go line and the replace block a wrapper must
// repeat: a directory replace of the module's own (./api) becomes the published module of that path at the
// component's version. Its components' tests compare them with the wrapper's.
func Upstream(ctx context.Context, cache string, c Component) (string, map[string]string, error) {
	dir, err := ModuleDir(ctx, cache, c)
	if err != nil {
		return "", nil, err
	}
	out, err := exec.CommandContext(ctx, "go", "mod", "edit", "-json", filepath.Join(dir, "go.mod")).Output()
	if err != nil {
		return "", nil, fmt.Errorf("%s: go mod edit -json: %w", c.Name, err)
	}
	var mod struct {
		Go      string
		Replace []struct {
			Old, New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", nil, err
	}
	want := map[string]string{}
	for _, r := range mod.Replace {
		if r.New.Version == "" { // a directory of the module: the published module of that path
			want[r.Old.Path] = r.Old.Path + " " + c.Version
		} else {
			want[r.Old.Path] = r.New.Path + " " + r.New.Version
		}
	}
	return mod.Go, want, nil
}

// lock takes an exclusive flock on path (created if missing), waiting while another process holds it; the lock
// goes with the process, so a killed builder never leaves it held.
func lock(ctx context.Context, path string, log io.Writer, name string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waited {
			fmt.Fprintf(log, "build: %s — another process is building it, waiting (%s)\n", name, path)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
