#!/usr/bin/env bash
# Installs the system packages Dora's real parts come from (etcd, Docker, busybox for
# the test image, a Python >= 3.11 that can make virtual environments), and only those
# that are missing: on a machine that has them all this is a no-op that needs no
# network and no root.
#
#   hack/install-deps.sh [EXTRA_DEBIAN_PACKAGE...]
#
# Extra packages (e.g. docker-compose for e2e) are installed when dpkg does not list
# them as installed.
#
# Debian's etcd-server and docker.io packages would start their services on install;
# we block that with a policy-rc.d for the duration: `make up` and the test fixtures
# start their own daemons, and a packaged etcd on :2379 would clash with `make up`'s.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
# dockerd lives in /usr/sbin, which a non-root PATH may lack.
command -v dockerd >/dev/null 2>&1 || [[ -x /usr/sbin/dockerd ]] || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || [[ " ${missing[*]} " == *" docker.io "* ]] || missing+=(docker.io)
# The test image needs a statically linked busybox: Debian's plain `busybox` package
# also installs /bin/busybox, but dynamically linked, which is useless in a bare image.
busybox_static() {
  local out
  [[ -x /bin/busybox ]] || return 1
  out="$(LC_ALL=C ldd /bin/busybox 2>&1 || true)"
  [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]]
}
busybox_static || missing+=(busybox-static)
# The fencing test cuts a network link for real: `ip netns` and veth pairs.
command -v ip >/dev/null 2>&1 || [[ -x /usr/sbin/ip ]] || missing+=(iproute2)
# Python: hack/venv.sh needs python3 >= 3.11 with venv and ensurepip (Debian splits
# ensurepip out into python3-venv).
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
elif ! "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  missing+=(python3-venv)
fi
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  log "system dependencies present"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 ||
  die "missing ${missing[*]} and no apt-get here: install them by hand (see DESIGN.md, 'Real parts')"
log "installing ${missing[*]}"

export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
  as_root sh -c "printf '#!/bin/sh\n# hack/install-deps.sh: no service starts during install\nexit 101\n' >'$policy' && chmod 755 '$policy'"
  trap 'as_root rm -f "$policy"' EXIT
fi

apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]}"

# Belt and braces: if something started a packaged etcd anyway, stop it, so that it
# does not hold the port `make up` uses.
if [[ " ${missing[*]} " == *" etcd-server "* ]] && [[ -x /etc/init.d/etcd ]]; then
  as_root /etc/init.d/etcd stop >/dev/null 2>&1 || true
fi
log "installed ${missing[*]}"
