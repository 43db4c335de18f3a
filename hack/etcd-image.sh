#!/usr/bin/env bash
# Builds dora/etcd:<version> and dora/etcd:latest (or $DORA_ETCD_IMAGE:...) from this
# machine's Debian etcd on top of dora/debian-base:bookworm (hack/base-image.sh): no
# registry is reachable, and the build has no network. The binaries must link against
# nothing but glibc (Debian's are built that way). Rebuilt only when the binaries, the
# Dockerfile or the base changed (the org.dora.inputs label); DORA_IMAGE_REBUILD=1 forces.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

image="${DORA_ETCD_IMAGE:-dora/etcd}"
base="${DORA_BASE_IMAGE:-dora/debian-base:bookworm}"
dockerfile=hack/images/etcd.Dockerfile

hack/install-deps.sh
DORA_IMAGE_REBUILD='' hack/base-image.sh
etcd="$(command -v etcd)"
etcdctl="$(command -v etcdctl)"

# only_glibc BINARY: true when BINARY is static or needs only libc and the loader.
only_glibc() {
  local libs
  libs="$(LC_ALL=C ldd "$1" 2>&1 || true)"
  [[ "$libs" == *"not a dynamic executable"* || "$libs" == *"statically linked"* ]] && return 0
  ! grep -v -E '^\s*(linux-vdso\.so|libc\.so\.6|/lib64/ld-linux|libpthread\.so\.0)' <<<"$libs" | grep -q .
}
for binary in "$etcd" "$etcdctl"; do
  only_glibc "$binary" || die "$binary needs more than glibc: $(ldd "$binary" | tr -s ' \n' ' ')"
done

version="$("$etcd" --version | awk '/^etcd Version:/ { print $3 }')"
[[ -n "$version" ]] || die "cannot tell the version of $etcd"
inputs="$(
  {
    sha256sum "$etcd" "$etcdctl" "$dockerfile"
    docker image inspect -f '{{.Id}}' "$base"
  } | sha256sum | cut -d' ' -f1
)"
have="$(docker image inspect -f '{{index .Config.Labels "org.dora.inputs"}}' "$image:$version" 2>/dev/null || true)"
if [[ "${DORA_IMAGE_REBUILD:-}" != 1 && "$have" == "$inputs" ]]; then
  docker tag "$image:$version" "$image:latest"
  log "image $image:$version is up to date"
  exit 0
fi

old_id="$(docker image inspect -f '{{.Id}}' "$image:latest" 2>/dev/null || true)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$etcd" "$etcdctl" "$tmp/"
cp "$dockerfile" "$tmp/Dockerfile"
log "building $image:$version from $etcd"
if ! DOCKER_BUILDKIT=0 docker build --network none --pull=false --force-rm --no-cache \
  --build-arg "BASE=$base" --build-arg "ETCD_VERSION=$version" \
  --label "org.dora.inputs=$inputs" \
  --tag "$image:$version" --tag "$image:latest" "$tmp" >"$tmp/build.log" 2>&1; then
  tail -n 40 "$tmp/build.log" >&2
  die "docker build of $image failed"
fi
if [[ -n "$old_id" && "$old_id" != "$(docker image inspect -f '{{.Id}}' "$image:latest")" ]]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
docker run --rm --network none "$image:$version" etcdctl version >/dev/null ||
  die "$image:$version does not run etcdctl"
log "built $image:$version ($(docker image inspect -f '{{.Size}}' "$image:latest" | numfmt --to=iec))"
