package barman

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/oci"
)

// sidecarBuilder is bumped whenever the build below changes in a way its arguments do not show.
const sidecarBuilder = "barman-sidecar-1"

// The sidecar's barman-cloud tools come from Debian: upstream's sidecar image pip-installs barman 3.20.0
// (containers/sidecar-requirements.txt of the module), and forky, the suite of the cluster's PostgreSQL image,
// carries 3.20.1 (python3-barman 3.20.1-1 when measured; SidecarImage records it).
const sidecarSuite = "forky"

// minBarman is the barman of upstream's sidecar image (sidecar-requirements.txt): the image refuses an older one.
const minBarman = "3.20.0"

// sidecarPackages: the cloud tools (barman-cloud-backup, -wal-archive, -wal-restore, -restore, -backup-list,
// -backup-delete, -check-wal-archive; they pull python3-barman and psycopg2) and the S3 library they use
// (a dependency of barman-cli-cloud in forky, named because the object store is S3). No zstandard or lz4
// (python3-barman only recommends them, mmdebstrap installs no Recommends): ObjectStore uses gzip.
var sidecarPackages = []string{"barman-cli-cloud", "python3-boto3"}

// sidecarExcludes are dpkg path-excludes: documentation, manuals, message catalogues.
var sidecarExcludes = []string{
	"/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/lintian/*", "/usr/share/locale/*",
}

// sidecarEssentialHook gives uid and gid 26 to a postgres user, as in the PostgreSQL image (cnpg/postgres.go):
// the sidecar runs as the instance's 26:26, which then has a name (libpq and Python look the current user up
// when none is given). Debian's static gid 26 (tape) moves to 990.
const sidecarEssentialHook = `set -eu
r=$1
if cut -d: -f3 "$r/etc/group" | grep -qx 990; then echo "gid 990 is taken" >&2; exit 1; fi
sed -i 's/^tape:\([^:]*\):26:/tape:\1:990:/' "$r/etc/group"
if cut -d: -f3 "$r/etc/passwd" | grep -qx 26 || cut -d: -f3 "$r/etc/group" | grep -qx 26; then echo "id 26 is taken" >&2; exit 1; fi
pw='*'
if [ -e "$r/etc/shadow" ]; then pw=x; fi
echo "postgres:$pw:26:" >>"$r/etc/group"
if [ -e "$r/etc/gshadow" ]; then echo 'postgres:!::' >>"$r/etc/gshadow"; fi
echo "postgres:$pw:26:26:PostgreSQL administrator,,,:/var/lib/postgresql:/usr/sbin/nologin" >>"$r/etc/passwd"
if [ -e "$r/etc/shadow" ]; then echo 'postgres:!:10957::::::' >>"$r/etc/shadow"; fi
`

// sidecarCustomizeHook checks that every tool the plugin runs is there and starts, that boto3 imports, that
// barman is at least minBarman and records its version, and removes what must not be in an image: apt
// sources (they name the machine's mirror), the host's resolv.conf and hostname, logs, backup files.
const sidecarCustomizeHook = `set -eu
r=$1
for t in barman-cloud-backup barman-cloud-backup-list barman-cloud-backup-show barman-cloud-backup-delete \
  barman-cloud-restore barman-cloud-wal-archive barman-cloud-wal-restore barman-cloud-check-wal-archive; do
  test -x "$r/usr/bin/$t" || { echo "missing $t" >&2; exit 1; }
done
chroot "$r" barman-cloud-wal-archive --version >/dev/null
chroot "$r" python3 -c 'import boto3, psycopg2'
test -x "$r/usr/bin/tar" || { echo "missing tar" >&2; exit 1; }
v=$(chroot "$r" dpkg-query -W -f='${Version}' python3-barman)
dpkg --compare-versions "$v" ge ` + minBarman + ` || { echo "python3-barman $v is older than ` + minBarman + `" >&2; exit 1; }
printf %s "$v" >"$TXMESH_BARMAN_VERSION"
rm -rf "$r/etc/apt/sources.list" "$r/etc/apt/sources.list.d/"* "$r/etc/resolv.conf" "$r/etc/hostname"
find "$r/var/log" -type f -delete
rm -f "$r/var/cache/debconf/"*-old "$r/var/lib/dpkg/"*-old "$r/etc/"*- "$r/var/cache/ldconfig/aux-cache"
`

// SidecarImage builds the instance sidecar's image: Debian's barman-cloud tools (mmdebstrap from
// sidecarSuite, through the machine's own Debian mirror) and the plugin's /manager as the entrypoint, as
// 26:26, as upstream's Dockerfile.sidecar lays it out (its tools in a virtualenv on PATH, here in /usr/bin).
// Image.Version is Debian's python3-barman version. Keyed by suite, packages, this builder's arguments and
// version and the manager binary (not by the mirror); needs root and the mirror.
func SidecarImage(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
	ref := "txmesh.local/plugin-barman-cloud-sidecar:" + Version + "-" + sidecarSuite
	mmdebstrap, err := images.Need("mmdebstrap", "mmdebstrap")
	if err != nil {
		return images.Image{}, err
	}
	manager := bins["manager"]
	mh, err := images.FileHash(manager)
	if err != nil {
		return images.Image{}, fmt.Errorf("sidecar image: the plugin's manager: %w", err)
	}
	mirror, err := images.DebianMirror("the Barman Cloud sidecar image (Debian " + sidecarSuite + ")")
	if err != nil {
		return images.Image{}, err
	}
	args := []string{"--variant=apt", "--format=tar", "--include=" + strings.Join(sidecarPackages, ","),
		`--aptopt=Acquire::Check-Valid-Until "false"`} // a snapshot mirror's testing Release may have expired
	for _, p := range sidecarExcludes {
		args = append(args, "--dpkgopt=path-exclude="+p)
	}
	args = append(args, "--essential-hook="+sidecarEssentialHook, "--customize-hook="+sidecarCustomizeHook)
	k := images.Key(append([]string{sidecarBuilder, sidecarSuite, mh}, args...)...)
	return b.Cached(ref, k, "", func(dir string) (string, oci.Image, error) {
		rootfs, versionFile := filepath.Join(dir, "rootfs.tar"), filepath.Join(dir, "version")
		if _, err := images.Run(ctx, images.Command{
			Name: mmdebstrap, Args: slices.Concat(args, []string{sidecarSuite, rootfs, "deb " + mirror + " " + sidecarSuite + " main"}),
			Dir: dir, Timeout: 15 * time.Minute,
			Env: []string{"SOURCE_DATE_EPOCH=" + fmt.Sprint(oci.Epoch.Unix()), "TXMESH_BARMAN_VERSION=" + versionFile},
		}); err != nil {
			return "", oci.Image{}, fmt.Errorf("mmdebstrap (needs root and the apt mirror): %w", err)
		}
		raw, err := os.ReadFile(versionFile)
		if err != nil {
			return "", oci.Image{}, fmt.Errorf("python3-barman version not recorded: %w", err)
		}
		if len(raw) == 0 {
			return "", oci.Image{}, fmt.Errorf("python3-barman version not recorded")
		}
		version := string(raw)
		return version, oci.Image{
			Layers:     []oci.Layer{oci.TarFile(rootfs), oci.Files{{Path: Binary, Source: manager, Mode: 0o755}}},
			Entrypoint: []string{Binary},
			User:       "26:26",
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
			Labels: map[string]string{
				"org.opencontainers.image.version":     Version,
				"io.txmesh.debian.suite":               sidecarSuite,
				"io.txmesh.debian.python3-barman":      version,
				"org.opencontainers.image.description": "Barman Cloud plugin sidecar: manager " + Version + ", Debian " + sidecarSuite + " barman " + version,
			},
		}, nil
	})
}
