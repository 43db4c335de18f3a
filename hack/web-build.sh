#!/usr/bin/env bash
# Builds the web app (web/ -> web/dist) that dora-web serves: installs Node.js and npm
# from Debian when they are missing, `npm ci` from the committed lockfile when the
# lockfile changed since the last install, then lint, typecheck and `vite build` when
# any source changed since the last build. Safe to run again: with nothing changed it
# is a no-op that needs no network.
#
#   hack/web-build.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

force=0
[[ "${1:-}" == "--force" ]] && force=1

node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 18) ? 0 : 1)'
}
if ! node_ok; then
  # Debian 12 ships Node.js 18.19 and npm 9: enough for the pinned toolchain.
  hack/install-deps.sh nodejs npm
  node_ok || die "Node.js >= 18.18 with npm is needed to build web/ (found: $(node --version 2>/dev/null || echo none))"
fi

cd web
deps_stamp=node_modules/.dora-installed
want_deps="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if ((force)) || [[ ! -d node_modules ]] || [[ "$(cat "$deps_stamp" 2>/dev/null || true)" != "$want_deps" ]]; then
  log "npm ci (web/package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want_deps" >"$deps_stamp"
fi

build_stamp=node_modules/.dora-built
want_build="$( (echo "$want_deps"; find src index.html vite.config.ts tsconfig.json eslint.config.js -type f -print0 |
  sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)"
if ((force)) || [[ ! -f dist/index.html ]] || [[ "$(cat "$build_stamp" 2>/dev/null || true)" != "$want_build" ]]; then
  log "lint, typecheck and build web/ -> web/dist"
  npm run --silent lint
  npm run --silent build
  echo "$want_build" >"$build_stamp"
  log "web/dist is built"
else
  log "web/dist is up to date"
fi
