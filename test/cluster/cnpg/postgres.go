package cnpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/oci"
)

// postgresBuilder is bumped whenever the build below changes in a way its arguments do not show.
const postgresBuilder = "postgres-2"

// PostgresSpec is one operand image: Debian's postgresql-<Major> from Suite, through the machine's own Debian
// mirror, tagged txmesh.local/postgresql:<Major>-<Tag> (Tag defaults to Suite). CloudNativePG reads the major
// version from the tag's leading digits (machinery's version.FromTag), so the tag must start with it.
type PostgresSpec struct {
	Major, Suite, Tag string
	// Pin, when set, is the Debian version of postgresql-<Major> and postgresql-client-<Major> installed instead
	// of the suite's current one. A suite's index names only its current version, so both packages are fetched
	// from the mirror's pool and checked against PinSHA256 (file name to hex SHA-256; amd64 only).
	Pin       string
	PinSHA256 map[string]string
	// Compat are packages of CompatSuite that an older major's binaries need in this image: CloudNativePG's
	// in-place major upgrade copies the old image's pg_config --bindir, --pkglibdir and --sharedir to
	// /controller/old (the Job's "prepare" init container, run from the old image) and pg_upgrade runs them in
	// the "major-upgrade" container, from this image. The build fails unless each of CompatSonames is then in
	// /usr/lib/<triplet>. Suite stays apt's default release: CompatSuite serves only what Suite lacks.
	CompatSuite   string
	Compat        []string
	CompatSonames []string
}

var (
	// Shipped is the image the manifests ship (the base's imageName is PostgreSQL 18); Debian carries 18 from
	// forky (testing) on, so the whole root file system comes from that suite.
	Shipped = PostgresSpec{Major: "18", Suite: "forky"}
	// UpgradeFrom is bank-db's image in make e2e until its major-upgrade row: trixie's PostgreSQL 17, pinned
	// to 17.11. pg_upgrade from trixie's 17.12 to forky's 18.6 fails at "Restoring database schemas in the
	// new cluster" (TestMajorUpgradeOffline shows it); an older minor of the old major is what works. Drop the
	// pin once forky carries a later 18. The hashes are those of the pool's files when pinned (the signed
	// index lists only the current 17.12).
	UpgradeFrom = PostgresSpec{Major: "17", Suite: "trixie", Pin: "17.11-0+deb13u1", PinSHA256: map[string]string{
		"postgresql-17_17.11-0+deb13u1_amd64.deb":        "d2ce1ddffafa783f9acda4c92c86fc21e8288bff3782d739294f14fa797d7886",
		"postgresql-client-17_17.11-0+deb13u1_amd64.deb": "9d8558f8dd57c8e92e218a20698383575d53742ca3f9e7c2b7fe5f246d5216ae",
	}}
	// UpgradeTo is the major-upgrade row's target: Shipped plus what UpgradeFrom's binaries link and forky no
	// longer carries (ICU 76; libxml2.so.2, where forky has libxml2-16). Both trixie packages need only libc6,
	// libgcc-s1, libstdc++6, liblzma5 and zlib1g, which forky serves. Same major as Shipped, so the row rolls
	// bank-db on to Shipped afterwards as a minor update.
	UpgradeTo = PostgresSpec{Major: "18", Suite: "forky", Tag: "forky-from17", CompatSuite: "trixie",
		Compat: []string{"libicu76", "libxml2"}, CompatSonames: []string{"libicuuc.so.76", "libicui18n.so.76", "libxml2.so.2"}}
)

// Ref is the image's reference.
func (s PostgresSpec) Ref() string {
	tag := s.Tag
	if tag == "" {
		tag = s.Suite
	}
	return "txmesh.local/postgresql:" + s.Major + "-" + tag
}

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
func pgCustomizeHook(major string) string {
	return `set -eu
r=$1
for b in initdb postgres pg_ctl pg_controldata pg_basebackup pg_rewind pg_isready psql; do
  test -x "$r/usr/lib/postgresql/` + major + `/bin/$b" || { echo "missing $b" >&2; exit 1; }
done
test -x "$r/usr/bin/du" || { echo "missing du" >&2; exit 1; }
test -d "$r/usr/lib/locale/C.utf8" || { echo "missing the C.UTF-8 locale" >&2; exit 1; }
test "$(stat -c %u:%g "$r/var/lib/postgresql")" = 26:26 || { echo "/var/lib/postgresql is not 26:26" >&2; exit 1; }
test ! -e "$r/var/lib/postgresql/` + major + `/main" || { echo "a main cluster was created" >&2; exit 1; }
chroot "$r" dpkg-query -W -f='${Version}' postgresql-` + major + ` >"$TXMESH_PG_VERSION"
rm -rf "$r/etc/apt/sources.list" "$r/etc/apt/sources.list.d/"* "$r/etc/resolv.conf" "$r/etc/hostname"
find "$r/var/log" -type f -delete
rm -f "$r/var/cache/debconf/"*-old "$r/var/lib/dpkg/"*-old "$r/etc/"*- "$r/var/cache/ldconfig/aux-cache"
`
}

// pgUpgradeHook checks, after pgCustomizeHook, what CloudNativePG's in-place major upgrade needs of an image:
// as the old one, pg_config and cp (the Job's "prepare" container runs both from it); as the new one,
// pg_upgrade and the compatibility libraries the old binaries link.
func pgUpgradeHook(s PostgresSpec) string {
	h := `set -eu
r=$1
for b in pg_config pg_upgrade; do
  test -x "$r/usr/lib/postgresql/` + s.Major + `/bin/$b" || { echo "missing $b" >&2; exit 1; }
done
test -x "$r/usr/bin/cp" || { echo "missing cp" >&2; exit 1; }
`
	for _, so := range s.CompatSonames {
		h += `ls "$r"/usr/lib/*/` + so + ` >/dev/null 2>&1 || { echo "missing ` + so + ` (` + s.CompatSuite + `)" >&2; exit 1; }
`
	}
	return h
}

// postgresRecipe is what a spec's image is built from: mmdebstrap's options before the suite (with the
// pinned packages spelled pkg=version: the build passes the fetched files instead) and the cache key. The
// shipped image's key is the one it had before specs existed (TestShippedPostgresKeyUnchanged), so adding
// the upgrade's images rebuilt nothing.
func postgresRecipe(s PostgresSpec) (args []string, key string) {
	packages := []string{"postgresql-" + s.Major}
	if s.Pin != "" {
		packages = []string{"postgresql-" + s.Major + "=" + s.Pin, "postgresql-client-" + s.Major + "=" + s.Pin}
	}
	packages = append(packages, s.Compat...)
	// A mirror that is a snapshot serves a testing suite whose Release has expired (testing's are valid for a
	// week); its signature is still checked against the machine's Debian keyring.
	args = []string{"--variant=apt", "--format=tar", "--include=" + strings.Join(packages, ","),
		`--aptopt=Acquire::Check-Valid-Until "false"`}
	if s.CompatSuite != "" {
		args = append(args, `--aptopt=APT::Default-Release "`+s.Suite+`"`)
	}
	if s.Pin != "" {
		// apt, outside the chroot, hands dpkg, inside it, the .deb files' paths: mmdebstrap's own hook copies
		// them to the same paths inside (and removes them afterwards).
		args = append(args, "--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount")
	}
	for _, p := range pgExcludes {
		args = append(args, "--dpkgopt=path-exclude="+p)
	}
	args = append(args, "--essential-hook="+pgEssentialHook, "--customize-hook="+pgCustomizeHook(s.Major))
	parts := []string{postgresBuilder, s.Suite}
	if s.Ref() != Shipped.Ref() {
		args = append(args, "--customize-hook="+pgUpgradeHook(s))
		parts = append(parts, s.Ref(), s.CompatSuite)
		for _, f := range slices.Sorted(maps.Keys(s.PinSHA256)) {
			parts = append(parts, f, s.PinSHA256[f])
		}
	}
	return args, images.Key(append(parts, args...)...)
}

// Postgres builds the shipped operand image, txmesh.local/postgresql:18-forky (PostgresImage of Shipped).
func Postgres(ctx context.Context, b *images.Builder) (images.Image, error) {
	return PostgresImage(ctx, b, Shipped)
}

// PostgresImage builds a CloudNativePG operand image from Debian's postgresql-<Major> with mmdebstrap, from
// the machine's own Debian mirror, and returns it as s.Ref() (the operator reads the major version from the
// tag). Image.Version is Debian's postgresql-<Major> version, also in the label
// org.opencontainers.image.version. Keyed by the spec and this builder's arguments and version (not by the
// mirror); a build takes 1-2 min here and needs the mirror.
func PostgresImage(ctx context.Context, b *images.Builder, s PostgresSpec) (images.Image, error) {
	what := "the PostgreSQL " + s.Major + " operand image (Debian " + s.Suite + ")"
	mmdebstrap, err := images.Need("mmdebstrap", "mmdebstrap")
	if err != nil {
		return images.Image{}, err
	}
	mirror, err := images.DebianMirror(what)
	if err != nil {
		return images.Image{}, err
	}
	args, k := postgresRecipe(s)
	sources := []string{"deb " + mirror + " " + s.Suite + " main"}
	if s.CompatSuite != "" {
		sources = append(sources, "deb "+mirror+" "+s.CompatSuite+" main")
	}
	return b.Cached(s.Ref(), k, "", func(dir string) (string, oci.Image, error) {
		args := slices.Clone(args)
		if s.Pin != "" {
			debs, err := fetchPinned(ctx, mirror, dir, s)
			if err != nil {
				return "", oci.Image{}, err
			}
			// One option per file: mmdebstrap takes an --include beginning with / as a single path.
			args = slices.Delete(args, 2, 3)
			for _, p := range slices.Backward(append(debs, s.Compat...)) {
				args = slices.Insert(args, 2, "--include="+p)
			}
		}
		rootfs, versionFile := filepath.Join(dir, "rootfs.tar"), filepath.Join(dir, "version")
		if _, err := images.Run(ctx, images.Command{
			Name: mmdebstrap, Args: slices.Concat(args, []string{s.Suite, rootfs}, sources), Dir: dir, Timeout: 15 * time.Minute,
			Env: []string{"SOURCE_DATE_EPOCH=" + fmt.Sprint(oci.Epoch.Unix()), "TXMESH_PG_VERSION=" + versionFile},
		}); err != nil {
			return "", oci.Image{}, fmt.Errorf("mmdebstrap (needs root and the apt mirror): %w", err)
		}
		raw, err := os.ReadFile(versionFile)
		if err != nil {
			return "", oci.Image{}, fmt.Errorf("postgresql-%s version not recorded: %w", s.Major, err)
		}
		if len(raw) == 0 {
			return "", oci.Image{}, fmt.Errorf("postgresql-%s version not recorded", s.Major)
		}
		version := string(raw)
		if s.Pin != "" && version != s.Pin {
			return "", oci.Image{}, fmt.Errorf("postgresql-%s %s installed, %s pinned", s.Major, version, s.Pin)
		}
		labels := map[string]string{
			"org.opencontainers.image.version":       version,
			"io.txmesh.debian.suite":                 s.Suite,
			"io.txmesh.debian.postgresql-" + s.Major: version,
			"org.opencontainers.image.description":   "CloudNativePG operand from Debian " + s.Suite + " postgresql-" + s.Major,
		}
		if s.CompatSuite != "" {
			labels["io.txmesh.debian.compat"] = s.CompatSuite + ": " + strings.Join(s.Compat, ",")
		}
		return version, oci.Image{
			Layers: []oci.Layer{oci.TarFile(rootfs)},
			Cmd:    []string{"postgres"},
			User:   "26:26",
			Env: []string{
				"PATH=/usr/lib/postgresql/" + s.Major + "/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"LANG=C.UTF-8",
			},
			WorkingDir: "/var/lib/postgresql",
			Ports:      []string{"5432/tcp"},
			Labels:     labels,
		}, nil
	})
}

// pinnedDebs are the pool's file names of a pinned spec's packages (amd64).
func pinnedDebs(s PostgresSpec) []string {
	return []string{
		"postgresql-" + s.Major + "_" + s.Pin + "_amd64.deb",
		"postgresql-client-" + s.Major + "_" + s.Pin + "_amd64.deb",
	}
}

// fetchPinned downloads a pinned spec's packages from the mirror's pool into dir, checks them against the
// spec's hashes and returns their paths, for mmdebstrap's --include (apt installs a .deb given by its path;
// its dependencies still come from the suite).
func fetchPinned(ctx context.Context, mirror, dir string, s PostgresSpec) ([]string, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("postgresql-%s %s is pinned by its amd64 packages only", s.Major, s.Pin)
	}
	var paths []string
	for _, name := range pinnedDebs(s) {
		want := s.PinSHA256[name]
		if want == "" {
			return nil, fmt.Errorf("no SHA-256 pinned for %s", name)
		}
		path := filepath.Join(dir, name)
		if err := download(ctx, strings.TrimSuffix(mirror, "/")+"/pool/main/p/postgresql-"+s.Major+"/"+name, path); err != nil {
			return nil, fmt.Errorf("%s, pinned, from the mirror's pool (gone from it? re-pin %s): %w", name, s.Ref(), err)
		}
		got, err := images.FileHash(path)
		if err != nil {
			return nil, err
		}
		if got != want {
			return nil, fmt.Errorf("%s: SHA-256 %s, pinned %s", name, got, want)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// download writes url's body to path. Its errors do not name the URL (the mirror is never written down).
func download(ctx context.Context, url, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return errors.New("not a valid URL")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("download interrupted: %w", err)
	}
	return f.Close()
}
