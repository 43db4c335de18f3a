#!/usr/bin/env bash
# `make bench` / `make bench-quick`: the benchmarks of bench/ (python -m bench), which
# print a table and write bench/results.json. Extra arguments go to python -m bench.
#
#   hack/bench.sh            full sizes
#   hack/bench.sh --quick    the same figures at small sizes (under 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

hack/install-deps.sh
hack/venv.sh
hack/start-dockerd.sh
hack/busybox-image.sh
use_venv
exec python -m bench "$@"
