#!/usr/bin/env bash
# `make image`: builds the tabby image (localhost/tabby:latest) as an OCI archive at
# build/image/tabby-oci.tar without a Docker engine. Same contents as
# deploy/Containerfile: Debian bookworm (debootstrap --variant=minbase), the packages
# in deploy/image/apt-packages.txt, the runtime pip requirements, Tabby installed into
# /usr/local by the image's own python3, entrypoint tabby-node.
#
# Two layers. The base (Debian + pip requirements) is cached in $TABBY_IMAGE_CACHE,
# keyed by everything that goes into it, so a rebuild after a code change only
# re-installs Tabby: seconds. The Tabby layer is installed in an overlay on top of
# the cached root, so the cache is never modified and the layer is exactly what
# install.py wrote.
#
# Needs root (debootstrap, chroot, mount). Idempotent; safe to run concurrently (a lock
# serializes builds sharing the cache). Environment:
#   TABBY_IMAGE_CACHE   cache dir (default /var/cache/tabby-image)
#   TABBY_IMAGE_OUT     output dir (default <repo>/build/image)
#   TABBY_DEBIAN_MIRROR Debian mirror (default: the one in debian.sources)
#   TABBY_BUILD_CA      CA bundle pip uses while building (default: $PIP_CERT or the
#                       host's bundle, which knows a TLS-intercepting proxy's CA); it is
#                       not left in the image
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/deploy/image
CACHE=${TABBY_IMAGE_CACHE:-/var/cache/tabby-image}
OUT=${TABBY_IMAGE_OUT:-$REPO/build/image}
SUITE=bookworm
ARCH=amd64
IMAGE_NAME=localhost/tabby
TAG=latest
# Bump when the steps that build the base change, so old caches are not reused.
BASE_RECIPE=1
KEEP_BASES=3
# Build-only Debian packages: in the base while pip runs, purged before it is layered.
BUILD_ONLY_DEBS=(python3-pip python3-setuptools python3-wheel python3-pkg-resources
  python3-distutils python3-lib2to3)
CHROOT_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)

log() { printf 'image: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

default_mirror() {
  # The first URI serving $SUITE in the deb822 sources file (fallback: deb.debian.org).
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -r "$f" ]; then
    awk -v suite="$SUITE" '
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite && uri != "") { print uri; exit } }
      /^$/ { uri = "" }' "$f"
  fi | grep . || echo http://deb.debian.org/debian
}

preflight() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
  local t
  for t in debootstrap umoci chroot mount tar python3 sha256sum flock; do
    command -v "$t" >/dev/null || die "missing tool '$t' (run scripts/setup.sh)"
  done
  ls "$REPO"/proto/*_pb2.py >/dev/null 2>&1 || die "proto stubs missing: run 'make proto'"
}

# --- base: Debian + runtime pip requirements, cached --------------------------------

unmount_under() {
  # Unmounts everything at or below $1, deepest first (debootstrap's /proc if it was
  # killed, our overlay), so that no rm -rf ever walks into a mounted filesystem.
  local dir m
  dir=$(realpath -m "$1")
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts |
    sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}

remove_tree() {
  [ -e "$1" ] || return 0
  unmount_under "$1"
  rm -rf --one-file-system "$1"
}

cleanup() {
  [ -n "${WORK:-}" ] && unmount_under "$WORK"
  [ -n "${BASE_TMP:-}" ] && remove_tree "$BASE_TMP"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

trim_root() {
  # What bookworm-slim leaves out: docs (copyright files stay), man pages, apt caches.
  local root=$1
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/debconf/*-old \
    "$root"/root/.cache "$root"/tmp/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/log/apt/*
  find "$root"/usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
  find "$root"/usr/share/doc -mindepth 1 -depth -type d -empty -delete
  # The runtime provides these; the build host's copies must not leak into the image.
  : >"$root"/etc/resolv.conf
  rm -f "$root"/etc/hostname
  # Device nodes debootstrap made for the chroot; the runtime mounts its own /dev.
  find "$root"/dev -mindepth 1 -delete
}

build_base() {
  local dir=$1 reqs=$2 mirror=$3 pkgs
  BASE_TMP=$dir.tmp.$$
  remove_tree "$BASE_TMP"
  mkdir -p "$BASE_TMP"
  local root=$BASE_TMP/rootfs
  pkgs=$(grep -v '^\s*#' "$HERE/apt-packages.txt" | xargs | tr ' ' ',')
  log "debootstrap $SUITE from $mirror (minbase + $pkgs + pip, about a minute)"
  debootstrap --variant=minbase --arch="$ARCH" --include="$pkgs,python3-pip" \
    "$SUITE" "$root" "$mirror" >"$OUT/debootstrap.log" 2>&1 ||
    die "debootstrap failed (log: $OUT/debootstrap.log): $(tail -n 2 "$OUT/debootstrap.log" | tr '\n' ' ')"
  log "pip install runtime requirements in the chroot"
  cp "$reqs" "$root/tmp/requirements.txt"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  local ca=${TABBY_BUILD_CA:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}} cert=()
  if [ -r "$ca" ]; then
    cp "$ca" "$root/tmp/build-ca.crt"
    cert=(--cert /tmp/build-ca.crt)
  fi
  chroot "$root" "${CHROOT_ENV[@]}" python3 -m pip install --break-system-packages \
    --no-cache-dir --disable-pip-version-check --no-warn-script-location \
    --root-user-action=ignore --quiet \
    "${cert[@]}" -r /tmp/requirements.txt
  log "purge build-only packages: ${BUILD_ONLY_DEBS[*]}"
  chroot "$root" "${CHROOT_ENV[@]}" dpkg --purge "${BUILD_ONLY_DEBS[@]}" >/dev/null
  trim_root "$root"

  log "layer the base"
  umoci init --layout "$BASE_TMP/oci"
  umoci new --image "$BASE_TMP/oci:base"
  umoci insert --image "$BASE_TMP/oci:base" \
    --history.created_by "debootstrap --variant=minbase $SUITE; pip install runtime requirements" \
    "$root" /
  mv "$BASE_TMP" "$dir"
  BASE_TMP=
}

prune_bases() {
  # Keeps the $KEEP_BASES most recently used bases (worktrees with different pins
  # share the cache); older ones are ~200 MiB each.
  local old
  find "$CACHE" -maxdepth 1 -name 'base-*' ! -name '*.tmp.*' -type d -printf '%T@ %p\n' |
    sort -rn | tail -n +$((KEEP_BASES + 1)) | cut -d' ' -f2- | while read -r old; do
    [ "$old" = "$1" ] && continue
    log "prune unused base $old"
    remove_tree "$old"
  done
}

# --- the Tabby layer, on an overlay over the cached base ----------------------------

install_tabby() {
  # Installs Tabby with the image's own python3 (launchers name it by absolute path).
  local base_root=$1 work=$2
  mkdir -p "$work/upper" "$work/ovl" "$work/root"
  mount -t overlay overlay -o "lowerdir=$base_root,upperdir=$work/upper,workdir=$work/ovl" \
    "$work/root"
  mkdir -p "$work/root/tmp/src"
  tar -C "$REPO" --exclude=./.git --exclude='./bazel-*' --exclude=./build \
    --exclude='__pycache__' --exclude=.pytest_cache --exclude=.ruff_cache -cf - . |
    tar -C "$work/root/tmp/src" -xf -
  chroot "$work/root" "${CHROOT_ENV[@]}" python3 /tmp/src/scripts/install.py \
    --prefix /usr/local >"$work/install.log"
  chroot "$work/root" "${CHROOT_ENV[@]}" python3 -m compileall -q /usr/local/lib/tabby >/dev/null
  chroot "$work/root" "${CHROOT_ENV[@]}" python3 -B /tmp/src/deploy/image/check_imports.py \
    /usr/local/lib/tabby >>"$work/install.log" ||
    die "an installed module does not import in the image (see above)"
  chroot "$work/root" "${CHROOT_ENV[@]}" tabby-node --version >"$work/version.txt" ||
    die "the installed tabby-node does not run in the image root"
  rm -rf "$work/root/tmp/src"
  umount "$work/root"
  # Only new files are expected; a whiteout would mean install.py deleted base content.
  if [ -n "$(find "$work/upper" -type c -print -quit)" ]; then
    die "install removed files from the base: $(find "$work/upper" -type c | head -n 3)"
  fi
  sed 's/^/image: /' "$work/install.log" >&2
}

git_revision() {
  local rev
  rev=$(git -C "$REPO" rev-parse HEAD 2>/dev/null) || {
    echo unknown
    return
  }
  git -C "$REPO" diff --quiet HEAD 2>/dev/null || rev="$rev-dirty"
  echo "$rev"
}

main() {
  local start=$SECONDS
  preflight
  mkdir -p "$CACHE" "$OUT"
  exec 9>"$CACHE/lock"
  flock 9

  local mirror reqs key base
  mirror=${TABBY_DEBIAN_MIRROR:-$(default_mirror)}
  reqs=$OUT/runtime-requirements.txt
  python3 "$HERE/runtime_requirements.py" "$REPO/requirements.txt" "$HERE/pip-runtime.txt" \
    >"$reqs"
  key=$({
    echo "recipe=$BASE_RECIPE suite=$SUITE arch=$ARCH mirror=$mirror"
    echo "build-only=${BUILD_ONLY_DEBS[*]}"
    grep -v '^\s*#' "$HERE/apt-packages.txt"
    cat "$reqs"
  } | sha256sum | cut -c1-16)
  base=$CACHE/base-$key
  if [ -f "$base/oci/index.json" ]; then
    log "base cached: $base"
  else
    build_base "$base" "$reqs" "$mirror"
  fi
  touch "$base"
  prune_bases "$base"

  # WORK is global for the EXIT trap; a run killed hard may have left it mounted.
  WORK=$OUT/work
  local work=$WORK
  remove_tree "$work"
  mkdir -p "$work"
  log "install Tabby into /usr/local"
  install_tabby "$base/rootfs" "$work"

  local oci=$work/oci version revision
  version=$(awk '{print $2}' "$work/version.txt")
  revision=$(git_revision)
  cp -a "$base/oci" "$oci"
  local upper=$work/upper/usr/local
  umoci insert --image "$oci:base" --tag "$TAG" \
    --history.created_by "scripts/install.py --prefix /usr/local (lib)" \
    "$upper/lib/tabby" /usr/local/lib/tabby
  umoci insert --image "$oci:$TAG" \
    --history.created_by "scripts/install.py --prefix /usr/local (launchers)" \
    "$upper/bin" /usr/local/bin
  umoci config --image "$oci:$TAG" --no-history \
    --os linux --architecture "$ARCH" \
    --config.entrypoint tabby-node --config.workingdir / \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env LANG=C.UTF-8 \
    --config.label org.opencontainers.image.title=tabby \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.revision=$revision" \
    --config.label org.opencontainers.image.description="Tabby node: Felix, BGP, CNI"
  umoci rm --image "$oci:base"
  umoci gc --layout "$oci"
  # The name containerd's importer (and `kind load image-archive`) gives the image
  # when no --base-name is passed.
  python3 - "$oci/index.json" "$IMAGE_NAME:$TAG" <<'EOF'
import json, sys
path, name = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for m in index["manifests"]:
    m.setdefault("annotations", {})["io.containerd.image.name"] = name
json.dump(index, open(path, "w"))
EOF
  tar -C "$oci" --owner=0 --group=0 --numeric-owner -cf "$OUT/tabby-oci.tar.tmp" \
    oci-layout index.json blobs
  mv "$OUT/tabby-oci.tar.tmp" "$OUT/tabby-oci.tar"

  local packed unpacked
  packed=$(du -m "$OUT/tabby-oci.tar" | cut -f1)
  unpacked=$(($(du -sm "$base/rootfs" | cut -f1) + $(du -sm "$upper" | cut -f1)))
  remove_tree "$work"
  log "built $IMAGE_NAME:$TAG ($(wc -l <"$reqs") pip packages," \
    "tabby-node $version, revision ${revision:0:12})"
  log "archive $OUT/tabby-oci.tar: ${packed} MiB compressed, ~${unpacked} MiB unpacked;" \
    "$((SECONDS - start)) s"
}

main "$@"
