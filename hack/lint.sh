#!/usr/bin/env bash
# `make lint`: ruff, mypy (strict, configured in pyproject.toml) and the import-linter
# layer contracts. Runs all three and fails if any failed, so one run shows every
# problem. Expects the venv (hack/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh
use_venv

failed=()
run() {
  log "$*"
  "$@" || failed+=("$1")
}
run ruff check .
run mypy
run lint-imports

if ((${#failed[@]})); then
  die "lint failed: ${failed[*]}"
fi
log "lint passed"
