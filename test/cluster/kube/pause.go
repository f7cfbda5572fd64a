package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/oci"
)

// pauseLayout is bumped whenever the image below changes for the same binary (it is in the cache key).
const (
	pauseLayout = "pause-1"
	pauseTag    = "3.10"
)

var pauseMakeTag = regexp.MustCompile(`(?m)^TAG \?= (\S+)$`)

// Pause compiles Kubernetes' own pause container (build/pause/linux/pause.c of k8s.io/kubernetes at
// Version, from the module cache or proxy) with gcc -static and returns txmesh.local/pause:3.10, the
// sandbox image of every pod: ENTRYPOINT /pause, USER 65535:65535, as upstream's Dockerfile.
func Pause(ctx context.Context, b *images.Builder) (images.Image, error) {
	goTool, err := images.Need("go", "golang (or Go from go.dev/doc/install)")
	if err != nil {
		return images.Image{}, err
	}
	gcc, err := images.Need("gcc", "gcc libc6-dev")
	if err != nil {
		return images.Image{}, err
	}
	work, err := b.Scratch("pause")
	if err != nil {
		return images.Image{}, err
	}
	defer os.RemoveAll(work)
	out, err := images.Run(ctx, images.Command{Name: goTool, Args: []string{"mod", "download", "-json", module + "@" + Version}, Dir: work,
		Env: []string{"GOWORK=off"}, Timeout: 10 * time.Minute})
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Error != "" || mod.Dir == "" {
		return images.Image{}, fmt.Errorf("go mod download %s@%s: %s: %w", module, Version, mod.Error, errors.Join(err, jerr))
	}
	src := filepath.Join(mod.Dir, "build", "pause")
	makefile, err := os.ReadFile(filepath.Join(src, "Makefile"))
	if err != nil {
		return images.Image{}, fmt.Errorf("pause: %w", err)
	}
	if m := pauseMakeTag.FindSubmatch(makefile); m == nil || string(m[1]) != pauseTag {
		return images.Image{}, fmt.Errorf("pause: %s/Makefile no longer says TAG ?= %s: update pauseTag", src, pauseTag)
	}
	bin, start := filepath.Join(work, "pause"), time.Now()
	// As upstream's Makefile (which uses -Os and strips afterwards), with -O2 -s.
	if _, err := images.Run(ctx, images.Command{Name: gcc, Args: []string{"-O2", "-Wall", "-Werror", "-static", "-s",
		"-DVERSION=v" + pauseTag + "-" + Version, "-o", bin, filepath.Join(src, "linux", "pause.c")},
		Dir: work, Timeout: 2 * time.Minute}); err != nil {
		return images.Image{}, fmt.Errorf("compile pause (a static link needs libc6-dev): %w", err)
	}
	h, err := images.FileHash(bin)
	if err != nil {
		return images.Image{}, err
	}
	return b.Cached("txmesh.local/pause:"+pauseTag, images.Key(pauseLayout, h), ", gcc "+images.Seconds(time.Since(start)), func(string) (string, oci.Image, error) {
		return "", oci.Image{
			Layers:     []oci.Layer{oci.Files{{Path: "/pause", Source: bin, Mode: 0o755}}},
			Entrypoint: []string{"/pause"},
			User:       "65535:65535",
		}, nil
	})
}
