#!/usr/bin/env bash
# Makes .venv (Python >= 3.11; $PYTHON picks the interpreter, default python3) and
# installs the project into it in editable mode with its dev and server extras (the
# distribution alone is the client: doractl and the SDK; [server] brings the daemons').
#
# The install runs only when pyproject.toml changed since the last one (a hash of it is
# kept in .venv/.dora-installed), so a second run costs a fraction of a second and no
# network. Editable means source edits under dora/ need no reinstall.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

py="${PYTHON:-python3}"
stamp="$VENV/.dora-installed"

venv_works() {
  [[ -x "$VENV/bin/python" ]] &&
    "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

if ! venv_works; then
  command -v "$py" >/dev/null 2>&1 || die "no $py on PATH: run hack/install-deps.sh"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$py is $("$py" -c 'import platform; print(platform.python_version())'); Dora needs >= 3.11 (set PYTHON=...)"
  if [[ -e "$VENV" ]]; then
    log "$VENV is broken or too old; recreating it"
    rm -rf "$VENV"
  fi
  log "creating $VENV with $(command -v "$py")"
  "$py" -m venv "$VENV" || die "could not create $VENV (on Debian: apt-get install python3-venv)"
fi

want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [[ "$want" == "$have" ]]; then
  log "$VENV is up to date"
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
log "installing dora-gpu[dev,server] into $VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The distribution was called "dora" before it became dora-gpu: the old one's scripts
# would shadow the new ones.
if "$VENV/bin/python" -m pip show --quiet dora >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip uninstall --quiet --yes dora
fi
"$VENV/bin/python" -m pip install -e '.[dev,server]'
echo "$want" >"$stamp"
log "$VENV is ready: source .venv/bin/activate"
