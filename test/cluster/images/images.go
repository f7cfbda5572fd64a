// Package images is what every image of the cluster shares: a cache of images built without a container
// engine, keyed by version or content, outside the checkout (Builder.Cached), the distroless-like base of
// the static Go binaries (Binary, StaticBase) and bounded subprocesses (Run). Each builder returns a
// docker-archive tarball for `ctr -n k8s.io images import` (or a push to the registry) and the reference it
// holds; the recipes live with their components (kube's pause, busybox, cnpg's PostgreSQL, txmesh).
//
// Cache layout: <Dir>/<repository>/<tag>-<key>/image.tar and info.json, e.g.
// ~/.cache/txmesh/cluster/images/txmesh.local/postgresql/18-forky-1a2b3c4d5e6f7a8b/image.tar. An entry is
// built under a temporary name and renamed into place whole, so a reader never sees half of one.
package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/txmesh/txmesh/test/cluster/oci"
)

// Image is a cached image tarball.
type Image struct {
	Ref     string `json:"ref"`               // e.g. txmesh.local/txmesh:e2e
	Path    string `json:"-"`                 // the docker-archive tarball
	ID      string `json:"id"`                // config digest, as `ctr images ls` and the kubelet show it
	Version string `json:"version,omitempty"` // what it packages, where that has a version (Debian's postgresql-18, busybox-static)
	Size    int64  `json:"size"`              // bytes
}

// Open reads the image from its tarball.
func (i Image) Open() (v1.Image, error) {
	tag, err := name.NewTag(i.Ref)
	if err != nil {
		return nil, err
	}
	return tarball.ImageFromPath(i.Path, &tag)
}

// Config reads the image's configuration (entrypoint, user, labels …) from its tarball.
func (i Image) Config() (*v1.ConfigFile, error) {
	img, err := i.Open()
	if err != nil {
		return nil, err
	}
	return img.ConfigFile()
}

// Builder builds images into a cache directory.
type Builder struct {
	Dir string    // cache directory; "" means DefaultDir()
	Log io.Writer // one line per image asked for; nil discards
}

// DefaultDir is $TXMESH_CACHE/images, or else ~/.cache/txmesh/cluster/images: the images directory of the
// cluster's cache (gobuild.CacheDir), where the stack keeps them too.
func DefaultDir() (string, error) {
	if d := os.Getenv("TXMESH_CACHE"); d != "" {
		return filepath.Join(d, "images"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("image cache: set TXMESH_CACHE or HOME: %w", err)
	}
	return filepath.Join(home, ".cache", "txmesh", "cluster", "images"), nil
}

func (b *Builder) dir() (string, error) {
	if b.Dir != "" {
		return b.Dir, nil
	}
	return DefaultDir()
}

func (b *Builder) logf(format string, args ...any) {
	if b.Log != nil {
		fmt.Fprintf(b.Log, "images: "+format+"\n", args...)
	}
}

// scratch makes a temporary directory in the cache (same filesystem as the entries, unlike /tmp may be).
func (b *Builder) Scratch(prefix string) (string, error) {
	dir, err := b.dir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	removeStale(dir)
	tmp, err := os.MkdirTemp(dir, ".tmp-"+prefix+"-")
	if err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	return tmp, nil
}

// cached returns the entry of ref and key, calling build to write image.tar into a fresh directory when
// there is none. build returns the packaged version, if any. note goes into the log line.
func (b *Builder) Cached(ref, key, note string, build func(dir string) (version string, img oci.Image, err error)) (Image, error) {
	start := time.Now()
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return Image{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	dir, err := b.dir()
	if err != nil {
		return Image{}, err
	}
	entry := filepath.Join(dir, filepath.FromSlash(tag.Context().RegistryStr()+"/"+tag.RepositoryStr()), tag.TagStr()+"-"+key[:16])
	if img, err := readEntry(entry); err == nil {
		b.logf("%s cached (%s%s): %s", ref, mib(img.Size), note, img.Path)
		return img, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return Image{}, err
	}

	if err := os.MkdirAll(filepath.Dir(entry), 0o755); err != nil {
		return Image{}, fmt.Errorf("image cache: %w", err)
	}
	removeStale(filepath.Dir(entry))
	tmp, err := os.MkdirTemp(filepath.Dir(entry), ".tmp-"+tag.TagStr()+"-")
	if err != nil {
		return Image{}, fmt.Errorf("image cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	version, spec, err := build(tmp)
	if err != nil {
		return Image{}, fmt.Errorf("build %s: %w", ref, err)
	}
	spec.Ref = ref
	id, err := oci.WriteFile(filepath.Join(tmp, "image.tar"), spec)
	if err != nil {
		return Image{}, fmt.Errorf("build %s: %w", ref, err)
	}
	st, err := os.Stat(filepath.Join(tmp, "image.tar"))
	if err != nil {
		return Image{}, err
	}
	info := Image{Ref: ref, ID: id, Version: version, Size: st.Size()}
	raw, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return Image{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "info.json"), append(raw, '\n'), 0o644); err != nil {
		return Image{}, fmt.Errorf("image cache: %w", err)
	}
	// Keep only what the entry needs (build may have left work files), then move it into place whole.
	if err := keepOnly(tmp, "image.tar", "info.json"); err != nil {
		return Image{}, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Image{}, err
	}
	if err := os.Rename(tmp, entry); err != nil {
		if img, rerr := readEntry(entry); rerr == nil { // another process built it meanwhile
			b.logf("%s built by another process (%s%s): %s", ref, mib(img.Size), note, img.Path)
			return img, nil
		}
		return Image{}, fmt.Errorf("image cache: %w", err)
	}
	info.Path = filepath.Join(entry, "image.tar")
	b.logf("%s built in %s (%s%s): %s", ref, Seconds(time.Since(start)), mib(info.Size), note, info.Path)
	return info, nil
}

// removeStale deletes the work directories of builds that died more than a day ago.
func removeStale(dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, p := range old {
		if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) > 24*time.Hour {
			_ = os.RemoveAll(p)
		}
	}
}

func readEntry(entry string) (Image, error) {
	raw, err := os.ReadFile(filepath.Join(entry, "info.json"))
	if err != nil {
		return Image{}, err
	}
	var img Image
	if err := json.Unmarshal(raw, &img); err != nil {
		return Image{}, fmt.Errorf("image cache %s: %w (delete the directory)", entry, err)
	}
	img.Path = filepath.Join(entry, "image.tar")
	st, err := os.Stat(img.Path)
	if err != nil {
		return Image{}, fmt.Errorf("image cache %s: %w (delete the directory)", entry, err)
	}
	if st.Size() != img.Size {
		return Image{}, fmt.Errorf("image cache %s: image.tar has %d bytes, info.json says %d (delete the directory)", entry, st.Size(), img.Size)
	}
	return img, nil
}

func keepOnly(dir string, names ...string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		keep := false
		for _, n := range names {
			keep = keep || e.Name() == n
		}
		if !keep {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func Seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// key hashes the parts of a cache key, each length-prefixed so that no two lists collide.
func Key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fileHash is the hex SHA-256 of a file's content.
func FileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// need finds a tool in PATH, or says which Debian package provides it.
func Need(tool, pkg string) (string, error) {
	p, err := exec.LookPath(tool)
	if err != nil {
		return "", fmt.Errorf("%s not found: apt-get install %s", tool, pkg)
	}
	return p, nil
}

// command is a subprocess with a deadline.
type Command struct {
	Name    string
	Args    []string
	Dir     string
	Env     []string // added to the environment
	Timeout time.Duration
}

// run runs c in its own process group and returns its standard output. When the deadline passes or ctx
// ends, the group gets SIGTERM (mmdebstrap unmounts and cleans up on it), then SIGKILL 20 s later; any
// process left in the group afterwards is killed. Errors carry the tail of standard error.
func Run(ctx context.Context, c Command) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		what := c.Name + " " + strings.Join(c.Args, " ")
		if len(what) > 200 {
			what = what[:200] + "…"
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no result within %v: %w", c.Timeout, err)
		} else if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w\n%s", what, err, tail(stderr.Bytes(), 3000))
	}
	return stdout.Bytes(), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = append([]byte("…"), b[len(b)-n:]...)
	}
	return strings.TrimSpace(string(b))
}
