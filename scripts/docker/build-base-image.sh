#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim when no container registry can be reached:
# a minimal Debian bookworm root filesystem made with debootstrap (bookworm's python3 is
# 3.11), imported with `docker import`. Pulls no image; needs root, Debian packages and Docker.
#
#   scripts/docker/build-base-image.sh [--force]
#
# Environment:
#   KVCLUSTER_LOCAL_BASE  tag to build (default kvcluster-base:bookworm-py311)
#   DEBIAN_MIRROR         Debian mirror URL (default: the one this host's apt uses for bookworm)
#   KVCLUSTER_BUILD_DIR   scratch and cache directory (default: <repo>/build/docker)
#
# Besides python3 the image holds python3-venv (for the image's virtualenv), ca-certificates,
# netbase and iptables (partition tests run `iptables` inside the node containers). The
# image is skipped when it exists and was made from the same recipe, so repeated builds are
# instant; --force rebuilds it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${KVCLUSTER_LOCAL_BASE:-kvcluster-base:bookworm-py311}"
BUILD_DIR="${KVCLUSTER_BUILD_DIR:-$ROOT/build/docker}"
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,netbase,iptables
ENV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Changing any of these makes a new recipe, and so a rebuild of an existing image.
RECIPE="$(printf '%s|%s|%s|v1' "$SUITE" "$PACKAGES" "$ENV_PATH" | sha1sum | cut -c1-12)"

log() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) die "usage: $0 [--force]" ;;
esac

if [ "$force" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  have="$(docker image inspect -f '{{ index .Config.Labels "io.kvcluster.base.recipe" }}' "$IMAGE")"
  if [ "$have" = "$RECIPE" ]; then
    log "$IMAGE exists (recipe $RECIPE); nothing to do"
    exit 0
  fi
  log "$IMAGE exists but was made from another recipe ($have, now $RECIPE); rebuilding"
fi

[ "$(id -u)" = 0 ] || die "debootstrap needs root; run as root (or with sudo)"

# The mirror this host's apt uses for $SUITE (one-line .list files and deb822 .sources
# files), so nothing here names a mirror host.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) print $i
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; enabled = "yes"
        for (j = 1; j <= NF; j++) {
          line = $j
          if (line ~ /^[ \t]*#/ || index(line, ":") == 0) continue
          key = tolower(substr(line, 1, index(line, ":") - 1))
          val = substr(line, index(line, ":") + 1)
          gsub(/^[ \t]+|[ \t]+$/, "", val)
          if (key == "types") types = val
          else if (key == "uris") uris = val
          else if (key == "suites") suites = val
          else if (key == "enabled") enabled = tolower(val)
        }
        if (enabled == "no" || (" " types " ") !~ / deb / || (" " suites " ") !~ (" " suite " ")) next
        n = split(uris, u, " ")
        for (k = 1; k <= n; k++) print u[k]
      }' "$f"
  done
}

MIRROR="${DEBIAN_MIRROR:-$(apt_mirror | grep -v -- '-security' | head -n1 || true)}"
[ -n "$MIRROR" ] || die "cannot tell which Debian mirror to use: apt on this host has no
'$SUITE' source. Set DEBIAN_MIRROR to a Debian mirror URL (ending in /debian)."

if ! command -v debootstrap >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get"
  log "installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    debootstrap debian-archive-keyring >/dev/null
fi
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$KEYRING" ] || die "missing $KEYRING (apt-get install debian-archive-keyring)"

mkdir -p "$BUILD_DIR/debs"
ROOTFS="$(mktemp -d "$BUILD_DIR/rootfs.XXXXXX")"
cleanup() {
  # debootstrap may leave /proc or /sys mounted inside the tree after a failure.
  local m
  for m in proc sys dev/pts; do
    mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
  done
  rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # so that cleanup runs when the caller gives up on us

log "debootstrap $SUITE from $MIRROR (packages: $PACKAGES)"
start=$(date +%s)
failed() { tail -n 30 "$BUILD_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $BUILD_DIR/debootstrap.log)"; }
# Two stages so that dpkg in the second one can skip its fsync per file (force-unsafe-io,
# as mmdebstrap does): the tree is thrown away on any failure anyway, and on a busy disk
# the fsyncs are most of the time.
debootstrap --foreign --variant=minbase --include="$PACKAGES" --keyring="$KEYRING" \
  --cache-dir="$BUILD_DIR/debs" "$SUITE" "$ROOTFS" "$MIRROR" >"$BUILD_DIR/debootstrap.log" 2>&1 \
  || failed
log "downloaded and unpacked in $(($(date +%s) - start))s; configuring"
mkdir -p "$ROOTFS/etc/dpkg/dpkg.cfg.d"
echo force-unsafe-io >"$ROOTFS/etc/dpkg/dpkg.cfg.d/kvcluster-build"
chroot "$ROOTFS" /debootstrap/debootstrap --second-stage >>"$BUILD_DIR/debootstrap.log" 2>&1 \
  || failed
rm -f "$ROOTFS/etc/dpkg/dpkg.cfg.d/kvcluster-build"
log "debootstrap took $(($(date +%s) - start))s"

# Slim it the way the python:*-slim images are: no docs, man pages, locales or apt caches.
rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
  "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old
# python3 is 3.11 on bookworm; give it the name the official image has as well.
ln -sf python3 "$ROOTFS/usr/bin/python"
chroot "$ROOTFS" python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || die "the $SUITE root filesystem has no Python 3.11"

log "importing as $IMAGE"
old="$(docker image inspect -f '{{ .Id }}' "$IMAGE" 2>/dev/null || true)"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change "ENV PATH=$ENV_PATH" \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL io.kvcluster.base.recipe=$RECIPE" \
  --change "LABEL io.kvcluster.base.suite=$SUITE" \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
# The image this replaced: removed if no tag names it any more and nothing uses it.
if [ -n "$old" ] && [ "$(docker image inspect -f '{{ len .RepoTags }}' "$old" 2>/dev/null)" = 0 ]; then
  docker rmi "$old" >/dev/null 2>&1 || true
fi
log "built $IMAGE in $(($(date +%s) - start))s ($(docker image inspect -f '{{ .Size }}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
