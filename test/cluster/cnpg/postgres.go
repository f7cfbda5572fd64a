package cnpg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/oci"
)

// postgresBuilder is bumped whenever the build below changes in a way its arguments do not show.
const postgresBuilder = "postgres-2"

// The manifests ship PostgreSQL 18 (the base's imageName); Debian carries it from forky (testing) on, so the
// whole root file system comes from that suite, through the machine's own Debian mirror.
const (
	pgSuite = "forky"
	pgMajor = "18"
)

var pgPackages = []string{"postgresql-" + pgMajor}

// pgExcludes are dpkg path-excludes: documentation, manuals, message catalogues and locale sources (C.UTF-8
// is built into glibc), and the LLVM JIT with z3, which only LLVM uses (PostgreSQL quietly runs without a
// JIT provider). The root file system shrinks from 460 to 190 MB.
// PostgreSQL's own manual pages stay: update-alternatives fails without the targets of its links.
var pgExcludes = []string{
	"/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/lintian/*", "/usr/share/locale/*",
	"/usr/share/i18n/charmaps/*", "/usr/share/i18n/locales/*",
	"/usr/lib/*/libLLVM-*", "/usr/lib/*/libz3.so*", "/usr/lib/postgresql/*/lib/llvmjit*", "/usr/lib/postgresql/*/lib/bitcode/*",
}

// pgEssentialHook runs after the Essential packages, before postgresql-common creates its user. Debian's
// static gid 26 is tape; CloudNativePG runs the instance as 26:26, so 26 becomes postgres' uid and gid
// (tape moves to 990) and every file postgresql-common creates belongs to them. It also stops the
// package from creating a cluster (the operator runs initdb), and leaves the (excluded) manual directories
// for update-alternatives' links.
const pgEssentialHook = `set -eu
r=$1
if grep -q '^postgres:' "$r/etc/passwd" "$r/etc/group"; then echo "postgres exists already" >&2; exit 1; fi
if cut -d: -f3 "$r/etc/group" | grep -qx 990; then echo "gid 990 is taken" >&2; exit 1; fi
sed -i 's/^tape:\([^:]*\):26:/tape:\1:990:/' "$r/etc/group"
if cut -d: -f3 "$r/etc/passwd" | grep -qx 26 || cut -d: -f3 "$r/etc/group" | grep -qx 26; then echo "id 26 is taken" >&2; exit 1; fi
# From trixie on, the Essential set has no shadow files yet (entries read '*'); the passwd package converts
# every entry, this one included, when it is installed.
pw='*'
if [ -e "$r/etc/shadow" ]; then pw=x; fi
echo "postgres:$pw:26:" >>"$r/etc/group"
if [ -e "$r/etc/gshadow" ]; then echo 'postgres:!::' >>"$r/etc/gshadow"; fi
echo "postgres:$pw:26:26:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash" >>"$r/etc/passwd"
if [ -e "$r/etc/shadow" ]; then echo 'postgres:!:10957::::::' >>"$r/etc/shadow"; fi
mkdir -p "$r/etc/postgresql-common/createcluster.d"
echo 'create_main_cluster = false' >"$r/etc/postgresql-common/createcluster.d/txmesh.conf"
for s in 1 2 3 4 5 6 7 8; do mkdir -p "$r/usr/share/man/man$s"; done
`

// pgCustomizeHook checks what CloudNativePG needs, records the PostgreSQL version and removes what a
// container does not need or must not carry: apt sources (they name the machine's mirror), the host's
// resolv.conf and hostname (mmdebstrap copies them), logs, backup files.
const pgCustomizeHook = `set -eu
r=$1
for b in initdb postgres pg_ctl pg_controldata pg_basebackup pg_rewind pg_isready psql; do
  test -x "$r/usr/lib/postgresql/` + pgMajor + `/bin/$b" || { echo "missing $b" >&2; exit 1; }
done
test -x "$r/usr/bin/du" || { echo "missing du" >&2; exit 1; }
test -d "$r/usr/lib/locale/C.utf8" || { echo "missing the C.UTF-8 locale" >&2; exit 1; }
test "$(stat -c %u:%g "$r/var/lib/postgresql")" = 26:26 || { echo "/var/lib/postgresql is not 26:26" >&2; exit 1; }
test ! -e "$r/var/lib/postgresql/` + pgMajor + `/main" || { echo "a main cluster was created" >&2; exit 1; }
chroot "$r" dpkg-query -W -f='${Version}' postgresql-` + pgMajor + ` >"$TXMESH_PG_VERSION"
rm -rf "$r/etc/apt/sources.list" "$r/etc/apt/sources.list.d/"* "$r/etc/resolv.conf" "$r/etc/hostname"
find "$r/var/log" -type f -delete
rm -f "$r/var/cache/debconf/"*-old "$r/var/lib/dpkg/"*-old "$r/etc/"*- "$r/var/cache/ldconfig/aux-cache"
`

// Postgres builds the CloudNativePG operand image from Debian's postgresql-18 with mmdebstrap, from the
// machine's own Debian mirror, and returns txmesh.local/postgresql:18-forky (the operator reads the major
// version from the tag). Image.Version is Debian's postgresql-18 version, also in the label
// org.opencontainers.image.version. Keyed by suite, packages and this builder's arguments and version
// (not by the mirror); a build takes 1-2 min here and needs the mirror.
func Postgres(ctx context.Context, b *images.Builder) (images.Image, error) {
	ref := "txmesh.local/postgresql:" + pgMajor + "-" + pgSuite
	mmdebstrap, err := images.Need("mmdebstrap", "mmdebstrap")
	if err != nil {
		return images.Image{}, err
	}
	mirror, err := images.DebianMirror("the PostgreSQL operand image (Debian " + pgSuite + ")")
	if err != nil {
		return images.Image{}, err
	}
	// A mirror that is a snapshot serves a testing suite whose Release has expired (testing's are valid for a
	// week); its signature is still checked against the machine's Debian keyring.
	args := []string{"--variant=apt", "--format=tar", "--include=" + strings.Join(pgPackages, ","),
		`--aptopt=Acquire::Check-Valid-Until "false"`}
	for _, p := range pgExcludes {
		args = append(args, "--dpkgopt=path-exclude="+p)
	}
	args = append(args, "--essential-hook="+pgEssentialHook, "--customize-hook="+pgCustomizeHook)
	k := images.Key(append([]string{postgresBuilder, pgSuite}, args...)...)
	return b.Cached(ref, k, "", func(dir string) (string, oci.Image, error) {
		rootfs, versionFile := filepath.Join(dir, "rootfs.tar"), filepath.Join(dir, "version")
		if _, err := images.Run(ctx, images.Command{
			Name: mmdebstrap, Args: slices.Concat(args, []string{pgSuite, rootfs, "deb " + mirror + " " + pgSuite + " main"}), Dir: dir, Timeout: 15 * time.Minute,
			Env: []string{"SOURCE_DATE_EPOCH=" + fmt.Sprint(oci.Epoch.Unix()), "TXMESH_PG_VERSION=" + versionFile},
		}); err != nil {
			return "", oci.Image{}, fmt.Errorf("mmdebstrap (needs root and the apt mirror): %w", err)
		}
		raw, err := os.ReadFile(versionFile)
		if err != nil {
			return "", oci.Image{}, fmt.Errorf("postgresql-%s version not recorded: %w", pgMajor, err)
		}
		if len(raw) == 0 {
			return "", oci.Image{}, fmt.Errorf("postgresql-%s version not recorded", pgMajor)
		}
		version := string(raw)
		return version, oci.Image{
			Layers: []oci.Layer{oci.TarFile(rootfs)},
			Cmd:    []string{"postgres"},
			User:   "26:26",
			Env: []string{
				"PATH=/usr/lib/postgresql/" + pgMajor + "/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"LANG=C.UTF-8",
			},
			WorkingDir: "/var/lib/postgresql",
			Ports:      []string{"5432/tcp"},
			Labels: map[string]string{
				"org.opencontainers.image.version":       version,
				"io.txmesh.debian.suite":                 pgSuite,
				"io.txmesh.debian.postgresql-" + pgMajor: version,
				"org.opencontainers.image.description":   "CloudNativePG operand from Debian " + pgSuite + " postgresql-" + pgMajor,
			},
		}, nil
	})
}
