// Package txmesh is the system under test in the throwaway cluster: its image built from the checkout as the
// Dockerfile does (image.go), the apps' own mTLS (tls.go), and kustomize/overlays/<name> rendered with the
// image at a tag and waited for until healthy (overlay.go).
package txmesh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/oci"
)

// commands are the commands the Dockerfile builds and copies to / (TestDockerfileAgrees).
var commands = []string{"bank", "store", "txaudit"}

// imageLayout is bumped whenever imageSpec changes what an image holds for the same binaries.
const imageLayout = "txmesh-1"

// Image builds /bank, /store and /txaudit from the repository at repoRoot as the Dockerfile does and
// returns the image txmesh.local/txmesh:<tag>, laid out as the Dockerfile's distroless final stage. The
// binaries are built every time (the Go build cache makes that quick); the image is keyed by their
// content and the tag.
func Image(ctx context.Context, b *images.Builder, repoRoot, tag string) (images.Image, error) {
	ref := "txmesh.local/txmesh:" + tag
	goTool, err := images.Need("go", "golang (or Go from go.dev/doc/install)")
	if err != nil {
		return images.Image{}, err
	}
	out, err := b.Scratch("txmesh-bin")
	if err != nil {
		return images.Image{}, err
	}
	defer os.RemoveAll(out)
	start := time.Now()
	if _, err := images.Run(ctx, images.Command{
		Name: goTool, Args: buildArgs(out+"/", tag), Dir: repoRoot, Timeout: 20 * time.Minute,
		Env: []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH, "GOWORK=off"},
	}); err != nil {
		return images.Image{}, fmt.Errorf("build %s: %w", ref, err)
	}
	buildTime := images.Seconds(time.Since(start))
	bins := map[string]string{}
	parts := []string{imageLayout, tag}
	for _, c := range commands {
		bins[c] = filepath.Join(out, c)
		h, err := images.FileHash(bins[c])
		if err != nil {
			return images.Image{}, fmt.Errorf("build %s: %w", ref, err)
		}
		parts = append(parts, c, h)
	}
	ca, err := images.FileHash(images.CACerts)
	if err != nil {
		return images.Image{}, fmt.Errorf("%w: apt-get install ca-certificates", err)
	}
	return b.Cached(ref, images.Key(append(parts, ca)...), ", go build "+buildTime, func(string) (string, oci.Image, error) {
		return "", imageSpec(ref, bins), nil
	})
}

// buildArgs is the Dockerfile's go build (with CGO_ENABLED=0 GOOS=linux in the environment).
func buildArgs(out, tag string) []string {
	args := []string{"build", "-trimpath", "-ldflags=-s -w -X main.version=" + tag, "-o", out}
	for _, c := range commands {
		args = append(args, "./src/cmd/"+c)
	}
	return args
}

// imageSpec is the Dockerfile's final stage: distroless static nonroot plus the binaries at /.
func imageSpec(ref string, bins map[string]string) oci.Image {
	var app oci.Files
	for _, c := range commands {
		app = append(app, oci.File{Path: "/" + c, Source: bins[c], Mode: 0o755})
	}
	return oci.Image{
		Ref:        ref,
		Layers:     []oci.Layer{images.StaticBase(), app},
		Cmd:        []string{"/bank", "serve"},
		User:       "65532:65532",
		Env:        images.StaticEnv,
		WorkingDir: "/home/nonroot",
		Ports:      []string{"8080/tcp"},
	}
}
