#!/usr/bin/env bash
# Builds the local image dora/busybox:latest (or $DORA_BUSYBOX_IMAGE) from Debian's
# statically linked busybox: no registry is reachable, so nothing can be pulled. The
# rootfs is /bin/busybox, one symlink per applet, a minimal /etc/passwd and /tmp; it is
# `docker import`ed with a shell as its command. Skipped when the image exists.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

image="${DORA_BUSYBOX_IMAGE:-dora/busybox:latest}"
busybox=/bin/busybox

if docker image inspect "$image" >/dev/null 2>&1; then
  log "image $image exists"
  exit 0
fi

[[ -x "$busybox" ]] || die "no $busybox: run hack/install-deps.sh"
ldd_out="$(LC_ALL=C ldd "$busybox" 2>&1 || true)"
[[ "$ldd_out" == *"not a dynamic executable"* || "$ldd_out" == *"statically linked"* ]] ||
  die "$busybox is dynamically linked: install busybox-static (hack/install-deps.sh)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
root="$tmp/rootfs"
mkdir -p "$root"/{bin,etc,root,tmp,var/tmp,proc,sys,dev}
chmod 1777 "$root/tmp" "$root/var/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [[ "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

log "importing $image ($("$busybox" --list | wc -l) applets)"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf - . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    --message "busybox-static from $(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)" \
    - "$image" >/dev/null
log "built $image"
