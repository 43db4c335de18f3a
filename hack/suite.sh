#!/usr/bin/env bash
# The suites that live outside tests/: `make e2e` (benchmarks: hack/bench.sh).
#
#   hack/suite.sh e2e [PYTEST_ARGS...]
#
# Runs `pytest e2e -q`; a suite without tests, or one that collects none, fails.
# It also installs docker-compose (e2e runs on it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

suite="${1:-}"
shift || true
extra_deps=()
case "$suite" in
  e2e)
    dir=e2e
    extra_deps=(docker-compose debootstrap)
    ;;
  *)
    echo "usage: $0 e2e [PYTEST_ARGS...]" >&2
    exit 2
    ;;
esac

[[ -n "$(find "$dir" -type f -name 'test_*.py' -print -quit 2>/dev/null)" ]] \
  || die "$dir/ holds no test_*.py: the $suite suite must exist"

hack/install-deps.sh "${extra_deps[@]}"
hack/venv.sh
hack/start-dockerd.sh
hack/busybox-image.sh
if [[ "$suite" == e2e ]]; then
  hack/dora-image.sh
  hack/etcd-image.sh
fi
export DORA_BUSYBOX_IMAGE="${DORA_BUSYBOX_IMAGE:-dora/busybox:latest}"
use_venv

log "pytest $dir -q $*"
rc=0
pytest "$dir" -q "$@" || rc=$?
if ((rc == 5)); then
  die "pytest collected no tests from $dir/"
fi
exit "$rc"
