#!/usr/bin/env bash
# Builds dora/dora:<version> and dora/dora:latest (or $DORA_IMAGE:...), the one image
# of the apiserver, the controllers and the agent, without any registry:
#
#   1. the base image dora/debian-base:bookworm (hack/base-image.sh) if missing;
#   2. a clean copy of the sources (git's tracked and unignored files: a stale build/
#      in the tree never leaks into the wheel);
#   3. the project's wheel (the dora-gpu distribution) and its dependencies' wheels,
#      with the [server] extra the daemons need, made on the host by `pip wheel`
#      (this, and only this, reaches PyPI);
#   4. the web app built by hack/web-build.sh (web/dist), which dora-web serves from
#      /opt/dora/web in the image ($DORA_WEB_DIST);
#   5. `docker build --network none` of hack/images/Dockerfile, which installs them
#      with `pip install --no-index`.
#
# It rebuilds only when something changed. The sources, the Dockerfile and the base
# image make an inputs hash kept in build/dora-image.stamp: when it matches the image,
# nothing runs and no network is needed. Otherwise the wheels are rebuilt (with a fixed
# SOURCE_DATE_EPOCH, so the same sources give the same wheel) and their hash is
# compared with the image's org.dora.wheels label: the image is rebuilt only when the
# wheel set differs. DORA_IMAGE_REBUILD=1 forces everything.
#
# The wheels must match the image's Python (Debian 12: 3.11). When the host's venv
# Python has another minor version, dependencies are fetched with `pip download
# --only-binary=:all:` for the image's Python and glibc instead of `pip wheel`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

image="${DORA_IMAGE:-dora/dora}"
base="${DORA_BASE_IMAGE:-dora/debian-base:bookworm}"
dockerfile=hack/images/Dockerfile
stamp="$DORA_ROOT/build/dora-image.stamp"
rebuild="${DORA_IMAGE_REBUILD:-}"

hack/venv.sh
DORA_IMAGE_REBUILD='' hack/base-image.sh
# The page dora-web serves (a no-op when web/ did not change since the last build).
hack/web-build.sh
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
src="$tmp/src"
ctx="$tmp/context"
mkdir -p "$src" "$ctx/wheels" "$ctx/web"
cp -a web/dist/. "$ctx/web/"
web_hash="$(cd "$ctx/web" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"

# The sources a wheel is made from: what git tracks or would track, as it is on disk.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do if [[ -f "$f" ]]; then printf '%s\0' "$f"; fi; done |
    tar --null -T - -cf - | tar -C "$src" -xf -
else
  tar --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
    --exclude='__pycache__' --exclude='*.egg-info' -cf - . | tar -C "$src" -xf -
fi
version="$("$VENV/bin/python" -c \
  'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$src/pyproject.toml")"

# What the wheel is made of (README.md is its long description), not tests/ and the rest.
wheel_sources=()
for path in pyproject.toml README.md setup.cfg setup.py MANIFEST.in dora; do
  if [[ -e "$src/$path" ]]; then
    wheel_sources+=("$path")
  fi
done
base_id="$(docker image inspect -f '{{.Id}}' "$base")"
inputs="$(
  {
    (cd "$src" && find "${wheel_sources[@]}" -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum)
    sha256sum "$dockerfile"
    echo "$base_id $version $web_hash"
  } | sha256sum | cut -d' ' -f1
)"

image_id() {
  docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true
}

latest_id="$(image_id "$image:latest")"
if [[ "$rebuild" != 1 && -n "$latest_id" && -s "$stamp" &&
  "$(<"$stamp")" == "$inputs $latest_id" && "$(image_id "$image:$version")" == "$latest_id" ]]; then
  log "image $image:$version is up to date"
  exit 0
fi

# The wheels.
started=$SECONDS
host_py="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
image_py="$(docker image inspect -f '{{index .Config.Labels "org.dora.python"}}' "$base")"
image_py="${image_py%.*}"
[[ -n "$image_py" ]] || die "$base has no org.dora.python label: rebuild it (DORA_IMAGE_REBUILD=1 hack/base-image.sh)"
export SOURCE_DATE_EPOCH=315532800 PIP_PROGRESS_BAR=off
if [[ "$host_py" == "$image_py" && "${DORA_IMAGE_PIP_DOWNLOAD:-}" != 1 ]]; then
  log "building wheels of $src with Python $host_py"
  "${pip[@]}" wheel --quiet --wheel-dir "$ctx/wheels" "$src[server]"
else
  # Another Python here than in the image: build our own (pure Python) wheel, then fetch
  # the dependencies' binary wheels for the image's interpreter and C library.
  arch="$(uname -m)"
  glibc="$(docker run --rm --network none "$base" python3 -c \
    'import platform; print(platform.libc_ver()[1].split(".")[1])')"
  platforms=(--platform "manylinux2014_$arch" --platform "linux_$arch")
  for ((minor = 17; minor <= glibc; minor++)); do
    platforms+=(--platform "manylinux_2_${minor}_$arch")
  done
  abi="cp${image_py/./}"
  log "host Python $host_py, image Python $image_py: downloading wheels for $abi, glibc 2.$glibc"
  "${pip[@]}" wheel --quiet --no-deps --wheel-dir "$ctx/wheels" "$src"
  "${pip[@]}" download --quiet --dest "$ctx/wheels" --only-binary=:all: \
    --python-version "$image_py" --implementation cp --abi "$abi" --abi abi3 --abi none \
    "${platforms[@]}" "$(find "$ctx/wheels" -name "dora_gpu-$version-*.whl" -print -quit)[server]"
fi
[[ -n "$(find "$ctx/wheels" -name "dora_gpu-$version-*.whl" -print -quit)" ]] ||
  die "no dora_gpu-$version wheel was built"
wheels="$(
  {
    (cd "$ctx/wheels" && sha256sum -- *.whl | sort -k2)
    sha256sum "$dockerfile"
    echo "$base_id $web_hash"
  } | sha256sum | cut -d' ' -f1
)"
log "$(find "$ctx/wheels" -name '*.whl' | wc -l) wheels ($(du -sh "$ctx/wheels" | cut -f1)) in $((SECONDS - started))s"

have="$(docker image inspect -f '{{index .Config.Labels "org.dora.wheels"}}' "$image:latest" 2>/dev/null || true)"
if [[ "$rebuild" != 1 && "$have" == "$wheels" ]]; then
  log "the wheel set is unchanged: keeping $image:latest"
else
  log "building $image:$version (docker build --network none)"
  started=$SECONDS
  cp "$dockerfile" "$ctx/Dockerfile"
  cache=()
  [[ "$rebuild" != 1 ]] || cache=(--no-cache)
  # The classic builder: Docker 20.10 here has no BuildKit, and it needs none.
  if ! DOCKER_BUILDKIT=0 docker build --network none --pull=false --force-rm "${cache[@]}" \
    --build-arg "BASE=$base" --build-arg "DORA_VERSION=$version" \
    --label "org.dora.wheels=$wheels" \
    --tag "$image:$version" --tag "$image:latest" "$ctx" >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log" >&2
    die "docker build of $image failed"
  fi
  log "built $image:$version in $((SECONDS - started))s"
  # The classic builder keeps the install stage (wheels and all) as an untagged image;
  # only an unchanged wheel set would reuse it, and then we do not build at all.
  docker image prune --force --filter label=org.dora.stage=install >/dev/null
fi
docker tag "$image:latest" "$image:$version"

# The image we replaced, now untagged (a container still using it keeps it).
new_id="$(image_id "$image:latest")"
if [[ -n "$latest_id" && "$latest_id" != "$new_id" ]]; then
  docker image rm "$latest_id" >/dev/null 2>&1 || true
fi
latest_id="$new_id"
mkdir -p "$(dirname "$stamp")"
echo "$inputs $latest_id" >"$stamp"
docker run --rm --network none "$image:$version" dora-apiserver --help >/dev/null ||
  die "$image:$version does not run dora-apiserver --help"
docker run --rm --network none "$image:$version" sh -c \
  'dora-web --help >/dev/null && test -s "$DORA_WEB_DIST/index.html"' ||
  die "$image:$version does not run dora-web --help or lacks the built web app"
log "$image:$version ($(docker image inspect -f '{{.Size}}' "$image:latest" | numfmt --to=iec)) runs dora-apiserver"
