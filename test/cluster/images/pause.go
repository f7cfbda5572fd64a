package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/txmesh/txmesh/test/cluster/oci"
)

const (
	pauseLayout = "pause-1"
	kubeModule  = "k8s.io/kubernetes"
	kubeVersion = "v1.32.13"
	pauseTag    = "3.10"
)

var pauseMakeTag = regexp.MustCompile(`(?m)^TAG \?= (\S+)$`)

// Pause compiles Kubernetes' own pause container (build/pause/linux/pause.c of k8s.io/kubernetes
// v1.32.13, from the module cache or proxy) with gcc -static and returns txmesh.local/pause:3.10:
// ENTRYPOINT /pause, USER 65535:65535, as upstream's Dockerfile.
func (b *Builder) Pause(ctx context.Context) (Image, error) {
	goTool, err := need("go", "golang (or Go from go.dev/doc/install)")
	if err != nil {
		return Image{}, err
	}
	gcc, err := need("gcc", "gcc libc6-dev")
	if err != nil {
		return Image{}, err
	}
	work, err := b.scratch("pause")
	if err != nil {
		return Image{}, err
	}
	defer os.RemoveAll(work)
	out, err := run(ctx, command{name: goTool, args: []string{"mod", "download", "-json", kubeModule + "@" + kubeVersion}, dir: work,
		env: []string{"GOWORK=off"}, timeout: 10 * time.Minute})
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Error != "" || mod.Dir == "" {
		return Image{}, fmt.Errorf("go mod download %s@%s: %s: %w", kubeModule, kubeVersion, mod.Error, errors.Join(err, jerr))
	}
	src := filepath.Join(mod.Dir, "build", "pause")
	makefile, err := os.ReadFile(filepath.Join(src, "Makefile"))
	if err != nil {
		return Image{}, fmt.Errorf("pause: %w", err)
	}
	if m := pauseMakeTag.FindSubmatch(makefile); m == nil || string(m[1]) != pauseTag {
		return Image{}, fmt.Errorf("pause: %s/Makefile no longer says TAG ?= %s: update pauseTag", src, pauseTag)
	}
	bin, start := filepath.Join(work, "pause"), time.Now()
	// As upstream's Makefile (which uses -Os and strips afterwards), with -O2 -s.
	if _, err := run(ctx, command{name: gcc, args: []string{"-O2", "-Wall", "-Werror", "-static", "-s",
		"-DVERSION=v" + pauseTag + "-" + kubeVersion, "-o", bin, filepath.Join(src, "linux", "pause.c")},
		dir: work, timeout: 2 * time.Minute}); err != nil {
		return Image{}, fmt.Errorf("compile pause (a static link needs libc6-dev): %w", err)
	}
	h, err := fileHash(bin)
	if err != nil {
		return Image{}, err
	}
	return b.cached("txmesh.local/pause:"+pauseTag, key(pauseLayout, h), ", gcc "+seconds(time.Since(start)), func(string) (string, oci.Image, error) {
		return "", oci.Image{
			Layers:     []oci.Layer{oci.Files{{Path: "/pause", Source: bin, Mode: 0o755}}},
			Entrypoint: []string{"/pause"},
			User:       "65535:65535",
		}, nil
	})
}
