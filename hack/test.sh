#!/usr/bin/env bash
# `make test` (and CI): sets the machine up, checks generated code and lint, then runs
# the unit and integration tests. Extra arguments go to pytest:
#
#   hack/test.sh -k watch -x
#
# The integration tests start their own etcd on free ports; this script starts no etcd
# (the `make up` one may be running or not, it is not used). It does start dockerd and
# build the busybox test image, because the Docker tests need an engine and CI always
# has one.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

hack/install-deps.sh
hack/venv.sh
hack/start-dockerd.sh
hack/busybox-image.sh
export DORA_BUSYBOX_IMAGE="${DORA_BUSYBOX_IMAGE:-dora/busybox:latest}"
use_venv

if [[ -f hack/verify-gen.sh ]]; then
  log "hack/verify-gen.sh"
  bash hack/verify-gen.sh
fi
hack/lint.sh

suites=(tests/unit tests/integration)
for dir in "${suites[@]}"; do
  [[ -d "$dir" ]] || die "$dir is missing: the unit and integration suites must both exist"
done

log "pytest ${suites[*]} -q $*"
rc=0
pytest "${suites[@]}" -q "$@" || rc=$?
if ((rc == 5)); then
  die "pytest collected no tests from ${suites[*]}: an empty suite is a failure, not a pass"
fi
exit "$rc"
