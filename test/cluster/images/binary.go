package images

import (
	"context"
	"fmt"
	"sort"

	"github.com/txmesh/txmesh/test/cluster/oci"
)

const binaryLayout = "binary-1"

// Binary returns an image ref holding static binaries built elsewhere (files maps a path in the image to
// a file on this machine; each becomes mode 0755) on the same base as Txmesh (users root, nobody and
// nonroot 65532, /tmp, CA bundle), with entrypoint and user (e.g. "65532:65532"; "" is root). Keyed by
// the content of the files and the arguments.
func (b *Builder) Binary(_ context.Context, ref string, files map[string]string, entrypoint []string, user string) (Image, error) {
	if len(files) == 0 {
		return Image{}, fmt.Errorf("image %s: no files", ref)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	ca, err := FileHash(CACerts)
	if err != nil {
		return Image{}, fmt.Errorf("%w: apt-get install ca-certificates", err)
	}
	parts := []string{binaryLayout, user, ca, fmt.Sprint(len(entrypoint))}
	parts = append(parts, entrypoint...)
	var app oci.Files
	for _, p := range paths {
		h, err := FileHash(files[p])
		if err != nil {
			return Image{}, fmt.Errorf("image %s: %w", ref, err)
		}
		parts = append(parts, p, h)
		app = append(app, oci.File{Path: p, Source: files[p], Mode: 0o755})
	}
	return b.Cached(ref, Key(parts...), "", func(string) (string, oci.Image, error) {
		return "", oci.Image{
			Layers:     []oci.Layer{StaticBase(), app},
			Entrypoint: entrypoint,
			User:       user,
			Env:        StaticEnv,
		}, nil
	})
}
