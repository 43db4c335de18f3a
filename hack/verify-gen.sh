#!/usr/bin/env bash
# Fails when dora/api/v1 differs from what hack/gen-proto.sh makes of proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
PYTHON="${PYTHON:-$PWD/.venv/bin/python}" hack/gen-proto.sh "$tmp"
if ! diff -ru dora/api/v1 "$tmp/dora/api/v1" -x __pycache__; then
  echo "dora/api/v1 is stale: run 'make gen' and commit the result" >&2
  exit 1
fi
echo "generated code is current"
