#!/usr/bin/env bash
# make terraform-check: build OpenTofu and the providers from the Go module proxy (cached by version outside the
# checkout), install the providers into a local filesystem mirror, then tofu init / validate / test / fmt -check
# every root module that can be checked. No provider registry is contacted: the CLI configuration below allows the
# filesystem mirror only.
#
#   terraform/build/check.sh [check] [MODULE…]  build what is not cached, then check
#   terraform/build/check.sh build [MODULE…]    only build (and fill the mirror)
#   terraform/build/check.sh paths [MODULE…]    build, then print tofu=<binary> and mirror=<directory>
#
# MODULEs (default: every checked one, and then the fmt-only ones are checked too) narrow the work to those
# root modules and the providers their lock files name: .ci/run checks `kubernetes` (what make e2e applies)
# before the e2e and builds azurerm, the longest build, beside it.
#
# TF_CACHE (default ~/.cache/txmesh/terraform) holds tofu-<version>/, provider builds and the mirror. Builds run
# under `nice -n 19` and take /tmp/txmesh-heavy.lock (shared with the other long CPU-bound jobs on the machine)
# when they have to compile; a warm cache needs neither.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

GO=${GO:-go}
TF_CACHE=${TF_CACHE:-$HOME/.cache/txmesh/terraform}
HEAVY_LOCK=${HEAVY_LOCK:-/tmp/txmesh-heavy.lock}
TOFU_VERSION=1.10.6
# One toolchain for every build (the one the Go module proxy serves and the main module names): with
# -trimpath the binaries, and so the h1: hashes in the lock files, are then the same on every machine.
BUILD_TOOLCHAIN=${BUILD_TOOLCHAIN:-go1.27.3}
# name|registry source|version the mirror gives it|Go package of its main|ldflags
PROVIDERS=(
  "azurerm|hashicorp/azurerm|5.2.0|github.com/hashicorp/terraform-provider-azurerm|-X github.com/hashicorp/terraform-provider-azurerm/version.ProviderVersion=5.2.0-fae580791926"
  "kubectl|gavinbunney/kubectl|1.19.0|github.com/gavinbunney/terraform-provider-kubectl|"
)
# Root modules checked with init + validate + fmt, and those that only get fmt (a provider they need cannot be
# built here: see terraform/README.md).
CHECKED=(azure kubernetes)
FMT_ONLY=(flux-bootstrap)

log() { printf '== %s\n' "$*"; }

mode=check
case "${1:-}" in check | build | paths) mode=$1; shift ;; esac
modules=("$@")
if [ "${#modules[@]}" -eq 0 ]; then
  modules=("${CHECKED[@]}")
else
  FMT_ONLY=()
  for m in "${modules[@]}"; do
    [[ " ${CHECKED[*]} " == *" $m "* ]] || { echo "check.sh: $m is not a checked root module (${CHECKED[*]})" >&2; exit 2; }
  done
fi
# The providers the modules' committed lock files name (registry.opentofu.org/<source>).
wanted=$(cd "$root" && for m in "${modules[@]}"; do
  sed -n 's|^provider "registry.opentofu.org/\(.*\)" {|\1|p' "$m/.terraform.lock.hcl"
done)

# build NAME OUT PKG LDFLAGS: compile PKG (a tool of the wrapper module terraform/build/NAME) into OUT, holding
# the machine-wide lock while compiling; the time logged is the compile's, without the wait for the lock.
build() {
  local name=$1 out=$2 pkg=$3 ldflags=$4
  [ -x "$out" ] && return 0
  mkdir -p "$(dirname "$out")"
  log "building $name (not cached: $out)"
  (
    cd "$root/build/$name"
    exec 9>>"$HEAVY_LOCK"
    flock -n 9 || { log "waiting for $HEAVY_LOCK"; flock 9; }
    start=$(date +%s)
    # -trimpath and a fixed toolchain make the binary, and so the lock file's h1: hash, reproducible.
    nice -n 19 env CGO_ENABLED=0 GOTOOLCHAIN="$BUILD_TOOLCHAIN" GOFLAGS="-mod=readonly -buildvcs=false" \
      "$GO" build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg"
    log "compiled $name in $(( $(date +%s) - start ))s with $BUILD_TOOLCHAIN ($(du -h "$out.tmp" | cut -f1))"
  )
  mv "$out.tmp" "$out"
}

tofu_bin=$TF_CACHE/tofu-v$TOFU_VERSION-$BUILD_TOOLCHAIN/tofu
mirror=$TF_CACHE/mirror-$BUILD_TOOLCHAIN
build tofu "$tofu_bin" github.com/opentofu/opentofu/cmd/tofu "-X github.com/opentofu/opentofu/version.dev=no"
for p in "${PROVIDERS[@]}"; do
  IFS='|' read -r name source version pkg ldflags <<<"$p"
  grep -qx "$source" <<<"$wanted" || continue
  bin=$TF_CACHE/$name-v$version-$BUILD_TOOLCHAIN/terraform-provider-${source#*/}
  build "$name" "$bin" "$pkg" "$ldflags"
  # Unpacked mirror layout: HOSTNAME/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION
  dir=$mirror/registry.opentofu.org/$source/$version/linux_amd64
  mkdir -p "$dir"
  cp -f "$bin" "$dir/terraform-provider-${source#*/}_v$version"
done
TF_CLI_CONFIG_FILE=/dev/null "$tofu_bin" version
[ "$mode" = build ] && exit 0
# `paths`: where the binary and the mirror are (make e2e applies terraform/kubernetes with them).
if [ "$mode" = paths ]; then printf 'tofu=%s\nmirror=%s\n' "$tofu_bin" "$mirror"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/tofurc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["*/*/*"]
  }
}
EOF
export TF_CLI_CONFIG_FILE=$work/tofurc TF_IN_AUTOMATION=1 TF_INPUT=0
unset TF_PLUGIN_CACHE_DIR

status=0
for dir in "${modules[@]}"; do
  log "terraform/$dir: init, validate, test, fmt -check"
  # A copy, so .terraform/ never lands in the checkout; the committed lock file must already pin every
  # provider at the mirror's hashes (-lockfile=readonly fails otherwise).
  cp -r "$root/$dir" "$work/$dir"
  (
    cd "$work/$dir"
    "$tofu_bin" init -backend=false -lockfile=readonly -no-color >"$work/$dir.init.log" 2>&1 ||
      { cat "$work/$dir.init.log"; exit 1; }
    grep -E '^- (Installing|Using)|Installed' "$work/$dir.init.log" || true
    "$tofu_bin" validate -no-color
    # Modules with tests/ plan against a mock of their provider (its real schema and validation, no API).
    if [ -d tests ]; then "$tofu_bin" test -no-color; fi
    "$tofu_bin" fmt -check -recursive -diff -no-color
  ) || status=1
done
for dir in "${FMT_ONLY[@]}"; do
  log "terraform/$dir: fmt -check (not init/validate: see terraform/README.md)"
  "$tofu_bin" fmt -check -recursive -diff -no-color "$root/$dir" || status=1
done
[ "$status" -eq 0 ] && log "terraform: every check passed"
exit "$status"
