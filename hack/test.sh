#!/usr/bin/env bash
# `make test` (and CI): sets the machine up, checks generated code and lint, then runs
# the unit and integration tests, then the web app's tests (tests/browser: the gateway's
# API, and headless Debian Chromium driven through the seed 000 tutorial on a real
# cluster). Extra arguments go to pytest:
#
#   hack/test.sh -k watch -x
#   hack/test.sh --web-only       # `make test-web`: build the web app, run tests/browser
#
# The integration tests start their own etcd on free ports; this script starts no etcd
# (the `make up` one may be running or not, it is not used). It does start dockerd and
# build the busybox test image, because the Docker tests need an engine and CI always
# has one.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

web_only=0
if [[ "${1:-}" == "--web-only" ]]; then
  web_only=1
  shift
fi

# chromium: the browser tests drive Debian's /usr/bin/chromium (no browser download).
hack/install-deps.sh chromium
hack/venv.sh
hack/start-dockerd.sh
hack/busybox-image.sh
export DORA_BUSYBOX_IMAGE="${DORA_BUSYBOX_IMAGE:-dora/busybox:latest}"
use_venv

hack/web-build.sh

rc=0
if ((!web_only)); then
  log "hack/verify-gen.sh"
  bash hack/verify-gen.sh
  hack/lint.sh

  # examples/controller: the example controller's own unit test, kept next to it.
  suites=(tests/unit tests/integration examples/controller)
  for dir in "${suites[@]}"; do
    [[ -d "$dir" ]] || die "$dir is missing: the unit and integration suites must both exist"
  done

  log "pytest ${suites[*]} -q $*"
  pytest "${suites[@]}" -q "$@" || rc=$?
  if ((rc == 5)); then
    die "pytest collected no tests from ${suites[*]}: an empty suite is a failure, not a pass"
  fi
fi

# The browser tests fail, never skip, when Chromium, Docker or the built page is missing.
log "pytest tests/browser -q $*"
web_rc=0
DORA_REQUIRE_BROWSER=1 pytest tests/browser -q -rs "$@" || web_rc=$?
if ((web_rc == 5)); then
  die "pytest collected no tests from tests/browser: an empty suite is a failure, not a pass"
fi
((rc != 0)) || rc=$web_rc
exit "$rc"
