// Package busybox is the small shell image of the cluster: local-path-provisioner's helper pods and the
// e2e's network probes run it. It is the machine's static busybox (Debian's busybox-static), not a build.
package busybox

import (
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/oci"
)

const busyboxLayout = "busybox-1"

const busyboxBin = "/bin/busybox"

// Image returns txmesh.local/busybox:<Debian version of busybox-static>: the machine's static
// /bin/busybox with a symbolic link for every applet at its usual path (sh, mkdir, rm, chmod, ls, cat,
// sleep…), /tmp, and root and nobody. Run as root, CMD sh: what local-path-provisioner's helper pods need.
func Image(ctx context.Context, b *images.Builder) (images.Image, error) {
	const install = "apt-get install busybox-static"
	f, err := elf.Open(busyboxBin)
	if err != nil {
		return images.Image{}, fmt.Errorf("%s: %w: %s", busyboxBin, err, install)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			f.Close()
			return images.Image{}, fmt.Errorf("%s is dynamically linked (Debian's busybox package): %s", busyboxBin, install)
		}
	}
	f.Close()
	dpkgQuery, err := images.Need("dpkg-query", "dpkg")
	if err != nil {
		return images.Image{}, err
	}
	out, err := images.Run(ctx, images.Command{Name: dpkgQuery, Args: []string{"-W", "-f=${Version}", "busybox-static"}, Timeout: 30 * time.Second})
	if err != nil {
		return images.Image{}, fmt.Errorf("busybox-static's version: %w: %s", err, install)
	}
	version := strings.TrimSpace(string(out))
	list, err := images.Run(ctx, images.Command{Name: busyboxBin, Args: []string{"--list-full"}, Timeout: 30 * time.Second})
	if err != nil {
		return images.Image{}, fmt.Errorf("busybox applets: %w", err)
	}
	applets := strings.Fields(string(list))
	sort.Strings(applets)
	for _, want := range []string{"bin/sh", "bin/mkdir", "bin/rm", "bin/chmod", "bin/ls", "bin/cat", "bin/sleep"} {
		if i := sort.SearchStrings(applets, want); i == len(applets) || applets[i] != want {
			return images.Image{}, fmt.Errorf("%s has no %s applet", busyboxBin, want)
		}
	}
	h, err := images.FileHash(busyboxBin)
	if err != nil {
		return images.Image{}, err
	}
	ref := "txmesh.local/busybox:" + tagSafe(version)
	return b.Cached(ref, images.Key(append([]string{busyboxLayout, version, h}, applets...)...), "", func(string) (string, oci.Image, error) {
		files := oci.Files{
			{Path: busyboxBin, Source: busyboxBin, Mode: 0o755},
			{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
			{Path: "/etc/group", Data: []byte("root:x:0:\nnobody:x:65534:\n")},
			{Path: "/root", Mode: fs.ModeDir | 0o700},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		}
		for _, a := range applets {
			if "/"+a != busyboxBin {
				files = append(files, oci.File{Path: "/" + a, Link: busyboxBin})
			}
		}
		return version, oci.Image{
			Layers: []oci.Layer{files},
			Cmd:    []string{"sh"},
			Env:    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		}, nil
	})
}

var notInTag = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// tagSafe turns a Debian version (1:1.35.0-4+deb12u1+b1) into a tag (1_1.35.0-4_deb12u1_b1).
func tagSafe(v string) string {
	return notInTag.ReplaceAllString(v, "_")
}
