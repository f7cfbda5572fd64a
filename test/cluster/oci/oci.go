// Package oci writes container images as docker-archive tarballs without a container engine: a
// description (layers, entrypoint, user, env…) in, a file that `ctr -n k8s.io images import` accepts out.
// The same description always gives the same bytes (fixed mtimes, sorted entries, fixed creation time).
package oci

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the modification time of every file in every layer and the image's creation time.
var Epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Image describes an image. The platform is linux and the architecture the machine's (amd64 here):
// containerd's import drops an image whose config has no os/architecture.
type Image struct {
	Ref        string // name with tag, e.g. txmesh.local/txmesh:e2e
	Layers     []Layer
	Entrypoint []string
	Cmd        []string
	User       string   // e.g. 65532:65532
	Env        []string // KEY=value
	WorkingDir string
	Ports      []string // exposed ports, e.g. 8080/tcp (or 8080, meaning tcp)
	Labels     map[string]string
}

// Layer is one filesystem layer: Files or TarFile.
type Layer interface {
	writeTo(tw *tar.Writer) error
}

// WriteFile writes img as a docker-archive tarball tagged img.Ref at path (not atomically: write to a
// temporary name and rename). It returns the image ID (the config's digest), as `ctr images ls` and the
// kubelet show it. Layers are compressed once into temporary files next to path, never held in memory.
func WriteFile(path string, img Image) (id string, err error) {
	tag, err := name.NewTag(img.Ref, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("image reference %q must be a name with a tag: %w", img.Ref, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".layers-")
	if err != nil {
		return "", fmt.Errorf("layer scratch directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	base, err := mutate.ConfigFile(empty.Image, configFile(img))
	if err != nil {
		return "", fmt.Errorf("image config: %w", err)
	}
	adds := make([]mutate.Addendum, 0, len(img.Layers))
	for i, l := range img.Layers {
		layer, err := compress(filepath.Join(tmp, fmt.Sprintf("%d.tar.gz", i)), l)
		if err != nil {
			return "", fmt.Errorf("%s: layer %d: %w", img.Ref, i, err)
		}
		adds = append(adds, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "txmesh test/cluster/oci"},
		})
	}
	image, err := mutate.Append(base, adds...)
	if err != nil {
		return "", fmt.Errorf("%s: layers: %w", img.Ref, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("create image tarball: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := tarball.Write(tag, image, w); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	digest, err := image.ConfigName()
	if err != nil {
		return "", fmt.Errorf("image ID: %w", err)
	}
	return digest.String(), nil
}

func configFile(img Image) *v1.ConfigFile {
	var ports map[string]struct{}
	for _, p := range img.Ports {
		if ports == nil {
			ports = map[string]struct{}{}
		}
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		ports[p] = struct{}{}
	}
	return &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: Epoch},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint:   img.Entrypoint,
			Cmd:          img.Cmd,
			User:         img.User,
			Env:          img.Env,
			WorkingDir:   img.WorkingDir,
			ExposedPorts: ports,
			Labels:       img.Labels,
		},
	}
}

// compress writes the layer's tar stream gzip-compressed to path, hashing both streams on the way, so
// the archive writer only has to copy the file.
func compress(path string, l Layer) (v1.Layer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	digest, diffID := sha256.New(), sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, digest), 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(io.MultiWriter(zw, diffID))
	if err := l.writeTo(tw); err != nil {
		return nil, err
	}
	for _, c := range []io.Closer{tw, zw} {
		if err := c.Close(); err != nil {
			return nil, err
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &fileLayer{path: path, size: st.Size(), digest: sum(digest), diffID: sum(diffID)}, nil
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

// fileLayer is a gzip-compressed layer in a file whose digests are already known.
type fileLayer struct {
	path           string
	size           int64
	digest, diffID v1.Hash
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return types.DockerLayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return gunzipFile(l.path) }

func gunzipFile(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, err
	}
	return readCloser{zr, func() error { return errors.Join(zr.Close(), f.Close()) }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
