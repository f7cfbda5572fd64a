package images

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/txmesh/txmesh/test/cluster/oci"
)

// txmeshCommands are the commands the Dockerfile builds and copies to / (TestDockerfileAgrees).
var txmeshCommands = []string{"bank", "store", "txaudit"}

// txmeshLayout is bumped whenever txmeshImage changes what an image holds for the same binaries.
const txmeshLayout = "txmesh-1"

// caCerts is where Debian and distroless keep the CA bundle.
const caCerts = "/etc/ssl/certs/ca-certificates.crt"

// Txmesh builds /bank, /store and /txaudit from the repository at repoRoot as the Dockerfile does and
// returns the image txmesh.local/txmesh:<tag>, laid out as the Dockerfile's distroless final stage. The
// binaries are built every time (the Go build cache makes that quick); the image is keyed by their
// content and the tag.
func (b *Builder) Txmesh(ctx context.Context, repoRoot, tag string) (Image, error) {
	ref := "txmesh.local/txmesh:" + tag
	goTool, err := need("go", "golang (or Go from go.dev/doc/install)")
	if err != nil {
		return Image{}, err
	}
	out, err := b.scratch("txmesh-bin")
	if err != nil {
		return Image{}, err
	}
	defer os.RemoveAll(out)
	start := time.Now()
	if _, err := run(ctx, command{
		name: goTool, args: txmeshBuildArgs(out+"/", tag), dir: repoRoot, timeout: 20 * time.Minute,
		env: []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH, "GOWORK=off"},
	}); err != nil {
		return Image{}, fmt.Errorf("build %s: %w", ref, err)
	}
	buildTime := seconds(time.Since(start))
	bins := map[string]string{}
	parts := []string{txmeshLayout, tag}
	for _, c := range txmeshCommands {
		bins[c] = filepath.Join(out, c)
		h, err := fileHash(bins[c])
		if err != nil {
			return Image{}, fmt.Errorf("build %s: %w", ref, err)
		}
		parts = append(parts, c, h)
	}
	ca, err := fileHash(caCerts)
	if err != nil {
		return Image{}, fmt.Errorf("%w: apt-get install ca-certificates", err)
	}
	return b.cached(ref, key(append(parts, ca)...), ", go build "+buildTime, func(string) (string, oci.Image, error) {
		return "", txmeshImage(ref, bins), nil
	})
}

// txmeshBuildArgs is the Dockerfile's go build (with CGO_ENABLED=0 GOOS=linux in the environment).
func txmeshBuildArgs(out, tag string) []string {
	args := []string{"build", "-trimpath", "-ldflags=-s -w -X main.version=" + tag, "-o", out}
	for _, c := range txmeshCommands {
		args = append(args, "./src/cmd/"+c)
	}
	return args
}

// txmeshImage is the Dockerfile's final stage: distroless static nonroot plus the binaries at /.
func txmeshImage(ref string, bins map[string]string) oci.Image {
	var app oci.Files
	for _, c := range txmeshCommands {
		app = append(app, oci.File{Path: "/" + c, Source: bins[c], Mode: 0o755})
	}
	return oci.Image{
		Ref:        ref,
		Layers:     []oci.Layer{staticBase(), app},
		Cmd:        []string{"/bank", "serve"},
		User:       "65532:65532",
		Env:        staticEnv,
		WorkingDir: "/home/nonroot",
		Ports:      []string{"8080/tcp"},
	}
}

// staticEnv is distroless static's environment.
var staticEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=" + caCerts,
}

// staticBase is what gcr.io/distroless/static-debian12:nonroot provides that a static Go binary may use:
// users root, nobody and nonroot (65532) with their homes, /tmp, the CA bundle (the machine's) and
// nsswitch.conf. No tzdata: the binaries do not load zones.
func staticBase() oci.Files {
	return oci.Files{
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n")},
		{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n")},
		{Path: caCerts, Source: caCerts, Mode: 0o644},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}
