#!/usr/bin/env bash
# Builds the Debian base image dora/debian-base:bookworm (or $DORA_BASE_IMAGE) that our
# own images start FROM: no registry is reachable, so nothing can be pulled.
#
# `debootstrap --variant=minbase` makes a bookworm rootfs with python3, python3-venv
# and ca-certificates from the apt mirror this machine already uses (or
# $DORA_DEBIAN_MIRROR), the apt caches are emptied, and the tree is `docker import`ed.
# About 40 s; skipped when the image exists (DORA_IMAGE_REBUILD=1 rebuilds it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

image="${DORA_BASE_IMAGE:-dora/debian-base:bookworm}"
suite=bookworm
packages=python3,python3-venv,ca-certificates

if [[ "${DORA_IMAGE_REBUILD:-}" != 1 ]] && docker image inspect "$image" >/dev/null 2>&1; then
  log "image $image exists"
  exit 0
fi

# apt_mirror: the first source apt has for $suite itself (not -updates or -security),
# from the one-line format (sources.list, *.list) or deb822 (*.sources).
apt_mirror() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$file" ]] || continue
    # deb [options] URI SUITE COMPONENT...
    awk -v suite="$suite" '
      $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit } }' "$file"
  done
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    # Stanzas are separated by blank lines; each has Types:, URIs: and Suites: fields.
    awk -v suite="$suite" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" &&
            enabled !~ /no/) {
          split(uris, u, " "); print u[1]; exit
        }
        types = uris = suites = enabled = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "types:"  { $1 = ""; types = $0 }
      tolower($1) == "uris:"   { $1 = ""; uris = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "enabled:" { $1 = ""; enabled = tolower($0) }
      END { flush() }' "$file"
  done
}

mirror="${DORA_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror="$(apt_mirror)"
  mirror="${mirror%%$'\n'*}"
fi
[[ -n "$mirror" ]] ||
  die "no apt source for $suite in /etc/apt/sources.list{,.d/}: set DORA_DEBIAN_MIRROR"

command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] ||
  hack/install-deps.sh debootstrap
debootstrap="$(command -v debootstrap || echo /usr/sbin/debootstrap)"

# On disk, not in a tmpfs /tmp that may be mounted nodev or noexec.
tmp="$(mktemp -d "${TMPDIR:-/var/tmp}/dora-base-image.XXXXXX")"
cleanup() {
  # debootstrap mounts /proc and /sys in the target while it runs and may leave them
  # behind when it fails: unmount whatever is below $tmp before deleting it, and never
  # let rm cross into another file system.
  local mounts
  mounts="$(awk -v dir="$tmp/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r)"
  if [[ -n "$mounts" ]]; then
    while read -r mount; do as_root umount -l "$mount" || true; done <<<"$mounts"
  fi
  as_root rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT
root="$tmp/rootfs"

log "debootstrap $suite from $mirror (minbase + $packages) into $root"
started=$SECONDS
if ! as_root "$debootstrap" --variant=minbase --include="$packages" \
  "$suite" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
  tail -n 30 "$tmp/debootstrap.log" >&2
  [[ -f "$root/debootstrap/debootstrap.log" ]] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
  die "debootstrap failed"
fi

# What a container does not need: downloaded packages, package lists (our builds on it
# have no network anyway), logs, man pages and docs (but the copyright files).
as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/usr/share/man/* "$root"/usr/share/info/*
as_root find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
py_version="$(as_root chroot "$root" python3 -c 'import platform; print(platform.python_version())')"

old_id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
log "importing $image (Python $py_version)"
as_root tar --numeric-owner -C "$root" -cf - . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.dora.debian-mirror=$mirror org.dora.python=$py_version" \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase --include=$packages $suite $mirror" \
    - "$image" >/dev/null
# The image we replaced, now untagged; images built FROM it keep it alive, so this may fail.
if [[ -n "$old_id" && "$old_id" != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
log "built $image in $((SECONDS - started))s ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
