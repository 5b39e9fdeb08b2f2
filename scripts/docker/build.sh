#!/usr/bin/env bash
# Build the kvcluster node image without pulling anything:
#   1. the base image: $BASE_IMAGE when it is set (it must already be present locally),
#      else the local Debian bookworm + Python 3.11 image of build-base-image.sh (built
#      once, then reused);
#   2. wheels for the image's Python (CPython 3.11, manylinux x86_64), on the host, in
#      build/docker/: dependencies in wheels/ and the build backend in buildenv/ (both
#      fetched from PyPI only when pyproject.toml changes), kvcluster's own wheel in dist/
#      (built offline every time: it is the code under test);
#   3. `docker build` of the Dockerfile with --build-arg BASE_IMAGE=..., which then needs
#      no network.
#
#   scripts/docker/build.sh
#
# Environment:
#   KVCLUSTER_IMAGE       tag of the node image (default kvcluster:latest)
#   BASE_IMAGE            base image to build on (default: the local one below)
#   KVCLUSTER_LOCAL_BASE  tag of the locally built base (default kvcluster-base:bookworm-py311)
#   PYTHON                host Python with pip, used to fetch wheels (default python3)
#   KVCLUSTER_REFRESH_WHEELS=1  fetch the dependency wheels and build backend again
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${KVCLUSTER_IMAGE:-kvcluster:latest}"
LOCAL_BASE="${KVCLUSTER_LOCAL_BASE:-kvcluster-base:bookworm-py311}"
PY="${PYTHON:-python3}"
OUT="$ROOT/build/docker"  # inside the build context: the Dockerfile copies from here
# The image's interpreter and platforms; the local base is glibc 2.36, python:3.11-slim newer.
PLATFORM_ARGS=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311
  --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

log() { printf 'build: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
t0=$(date +%s)

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"

# -- 1. base image -------------------------------------------------------------------------
if [ -n "${BASE_IMAGE:-}" ]; then
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "BASE_IMAGE=$BASE_IMAGE is not \
present locally and this script pulls nothing: \`docker pull $BASE_IMAGE\` first, or unset \
BASE_IMAGE to build on $LOCAL_BASE"
  base="$BASE_IMAGE"
else
  KVCLUSTER_LOCAL_BASE="$LOCAL_BASE" bash "$ROOT/scripts/docker/build-base-image.sh"
  base="$LOCAL_BASE"
fi
t1=$(date +%s)

# -- 2. wheels -----------------------------------------------------------------------------
# Fetched from PyPI only when pyproject.toml (or the target platform) changes: the
# dependency wheels and a small virtualenv with the build backend for kvcluster's own wheel.
mkdir -p "$OUT"
stamp="$( (cat "$ROOT/pyproject.toml"; echo "${PLATFORM_ARGS[*]}") | sha1sum | cut -c1-40)"
fresh() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$stamp" ]; }
if [ "${KVCLUSTER_REFRESH_WHEELS:-0}" = 1 ] || ! fresh "$OUT/buildenv"; then
  log "making the build environment (build/docker/buildenv)"
  rm -rf "$OUT/buildenv"
  "$PY" -m venv "$OUT/buildenv"
  "$PY" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' \
    "$ROOT/pyproject.toml" >"$OUT/buildenv/requirements.txt"
  "$OUT/buildenv/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$OUT/buildenv/requirements.txt" wheel
  echo "$stamp" >"$OUT/buildenv/.stamp"
fi

log "building the kvcluster wheel"
rm -rf "$OUT/dist.new"
# From a fresh copy of the sources (setuptools' in-tree build/lib would keep modules that
# were deleted since), offline. A fixed SOURCE_DATE_EPOCH makes the wheel byte-identical for
# identical sources, so an unchanged tree rebuilds from the layer cache.
src="$(mktemp -d "$OUT/src.XXXXXX")"
trap 'rm -rf "$src"' EXIT
trap 'exit 143' TERM INT
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -c pyproject.toml README.md kvcluster \
  | tar -C "$src" -x
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}" "$OUT/buildenv/bin/python" -m pip wheel -q \
  --disable-pip-version-check --no-index --no-build-isolation --no-deps -w "$OUT/dist.new" "$src" \
  >/dev/null
rm -rf "$src" "$OUT/dist"
mv "$OUT/dist.new" "$OUT/dist"
wheel="$(ls "$OUT"/dist/kvcluster-*.whl)"

if [ "${KVCLUSTER_REFRESH_WHEELS:-0}" = 1 ] || ! fresh "$OUT/wheels"; then
  log "fetching dependency wheels for CPython 3.11 manylinux x86_64"
  rm -rf "$OUT/wheels.new"
  "$PY" -m pip download -q --disable-pip-version-check "${PLATFORM_ARGS[@]}" \
    -d "$OUT/wheels.new" "$wheel"
  rm -f "$OUT"/wheels.new/kvcluster-*.whl
  echo "$stamp" >"$OUT/wheels.new/.stamp"
  rm -rf "$OUT/wheels" && mv "$OUT/wheels.new" "$OUT/wheels"
else
  log "dependency wheels are cached ($(ls "$OUT"/wheels/*.whl | wc -l) wheels)"
fi
t2=$(date +%s)

# -- 3. the image --------------------------------------------------------------------------
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0  # no buildx plugin: the legacy builder, said so once, here
  log "no docker buildx: using the legacy builder"
fi
old="$(docker image inspect -f '{{ .Id }}' "$IMAGE" 2>/dev/null || true)"
log "building $IMAGE on $base"
set +e
docker build --force-rm --build-arg BASE_IMAGE="$base" -t "$IMAGE" "$ROOT" 2>&1 \
  | grep -v -e '^DEPRECATED: The legacy builder' -e 'BuildKit is currently disabled' \
    -e 'Install the buildx component' -e 'docs.docker.com/go/buildx' -e '^ *environment-variable\.$' -e '^ *$'
status="${PIPESTATUS[0]}"
set -e
[ "$status" = 0 ] || die "docker build failed (exit $status)"
new="$(docker image inspect -f '{{ .Id }}' "$IMAGE")"
# The image this build replaced: removed if no tag names it any more and nothing uses it.
if [ -n "$old" ] && [ "$old" != "$new" ] \
  && [ "$(docker image inspect -f '{{ len .RepoTags }}' "$old" 2>/dev/null)" = 0 ]; then
  docker rmi "$old" >/dev/null 2>&1 || true
fi
t3=$(date +%s)
log "built $IMAGE in $((t3 - t0))s (base $((t1 - t0))s, wheels $((t2 - t1))s, image $((t3 - t2))s)"
