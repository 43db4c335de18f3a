# shellcheck shell=bash
# Shared helpers for the hack/ scripts: source it, don't run it.
#
#   cd "$(dirname "$0")/.."
#   source hack/lib.sh
#
# It sets DORA_ROOT (the repository root, also the working directory afterwards),
# DATA_DIR (state of the local `make up` cluster; never removed by any script) and
# VENV (the project's virtual environment).

DORA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$DORA_ROOT" || exit 1

# HOME can be unset under some CI runners and `set -u` would stop us there.
_dora_home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
# shellcheck disable=SC2034 # used by the scripts that source this file
DATA_DIR="${DORA_DATA_DIR:-${_dora_home:-/root}/.local/share/dora}"
VENV="$DORA_ROOT/.venv"
unset _dora_home

log() {
  printf '%s %s: %s\n' "$(date +%H:%M:%S)" "${0##*/}" "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

# as_root CMD...: runs CMD as root, through sudo when we are not root.
as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# use_venv: puts the virtual environment's tools first on PATH.
use_venv() {
  [[ -x "$VENV/bin/python" ]] || die "no virtual environment at $VENV: run hack/venv.sh"
  export VIRTUAL_ENV="$VENV"
  export PATH="$VENV/bin:$PATH"
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_for TIMEOUT_S DESCRIPTION CMD...: polls CMD until it succeeds; false after TIMEOUT_S.
wait_for() {
  local timeout="$1" what="$2"
  shift 2
  local deadline=$(($(_now_us) + timeout * 1000000))
  until "$@"; do
    if (($(_now_us) >= deadline)); then
      log "gave up after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# _now_us: microseconds since the epoch (the decimal point of $EPOCHREALTIME depends
# on the locale, so keep only its digits).
_now_us() {
  echo "${EPOCHREALTIME//[!0-9]/}"
}

# wait_for_port HOST PORT [TIMEOUT_S]
wait_for_port() {
  wait_for "${3:-30}" "$1:$2 to accept connections" port_open "$1" "$2"
}

# pid_running PIDFILE [NAME]: true when PIDFILE names a live process (whose command
# line mentions NAME, if given, so that a recycled pid does not count).
pid_running() {
  local pidfile="$1" name="${2:-}" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  ! _pid_gone "$pid" || return 1
  if [[ -n "$name" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
  fi
}

# start_daemon PIDFILE LOGFILE CMD...: runs CMD in the background in its own session,
# detached from our terminal and pipes, appending to LOGFILE; writes its pid to PIDFILE.
start_daemon() {
  local pidfile="$1" logfile="$2"
  shift 2
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
  printf '\n==== %s: %s\n' "$(date -Is)" "$*" >>"$logfile"
  # A non-interactive shell's background job is not a process-group leader, so setsid
  # execs in place and $! is the daemon's own pid.
  setsid "$@" </dev/null >>"$logfile" 2>&1 &
  echo $! >"$pidfile"
}

# stop_pidfile PIDFILE NAME [GRACE_S]: SIGTERM, wait up to GRACE_S (default 15), then
# SIGKILL. A missing or stale pidfile is not an error.
stop_pidfile() {
  local pidfile="$1" name="$2" grace="${3:-15}" pid
  if ! pid_running "$pidfile" "$name"; then
    rm -f "$pidfile"
    log "$name is not running"
    return 0
  fi
  pid="$(<"$pidfile")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "$grace" "$name to exit" _pid_gone "$pid"; then
    log "$name did not exit on SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 "$name to die" _pid_gone "$pid" || die "could not stop $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# _pid_gone PID: true when PID no longer runs. A zombie counts as gone: our daemons are
# orphans, and not every init reaps them promptly.
_pid_gone() {
  local state
  kill -0 "$1" 2>/dev/null || return 0
  # The state follows the command name, which is in parentheses and may hold spaces.
  state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null || true)"
  [[ "$state" == Z || -z "$state" ]]
}

# show_log_tail LOGFILE: the last lines of a daemon's log, for error messages.
show_log_tail() {
  if [[ -f "$1" ]]; then
    log "last lines of $1:"
    tail -n 30 "$1" >&2
  fi
}
