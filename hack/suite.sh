#!/usr/bin/env bash
# The suites that live outside tests/: `make e2e`, `make bench`, `make bench-quick`.
#
#   hack/suite.sh e2e|bench|bench-quick [PYTEST_ARGS...]
#
# Each runs `pytest <dir> -q` once its folder (e2e/ or bench/) holds test files; until
# then it says there is no such suite yet and succeeds. bench-quick runs the bench
# suite with DORA_BENCH_QUICK=1, which the benchmarks read to shrink their sizes.
# e2e also installs docker-compose (the e2e cluster runs on it).
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
    extra_deps=(docker-compose)
    ;;
  bench) dir=bench ;;
  bench-quick)
    dir=bench
    export DORA_BENCH_QUICK=1
    ;;
  *)
    echo "usage: $0 e2e|bench|bench-quick [PYTEST_ARGS...]" >&2
    exit 2
    ;;
esac

has_tests() {
  [[ -d "$1" ]] && [[ -n "$(find "$1" -type f \( -name 'test_*.py' -o -name '*_test.py' \) -print -quit)" ]]
}

if ! has_tests "$dir"; then
  log "no $dir suite yet ($dir/ holds no test_*.py); nothing to run"
  exit 0
fi

hack/install-deps.sh "${extra_deps[@]}"
hack/venv.sh
hack/start-dockerd.sh
hack/busybox-image.sh
export DORA_BUSYBOX_IMAGE="${DORA_BUSYBOX_IMAGE:-dora/busybox:latest}"
use_venv

log "pytest $dir -q $*"
rc=0
pytest "$dir" -q "$@" || rc=$?
if ((rc == 5)); then
  die "pytest collected no tests from $dir/"
fi
exit "$rc"
