#!/usr/bin/env bash
# Makes sure a Docker engine answers: does nothing when `docker info` works, otherwise
# starts dockerd in the background (there is no systemd to do it) and waits for it.
#
# dockerd runs as root and starts its own containerd. It is left running on purpose:
# it is shared by `make up`, the tests and whatever else uses Docker on the machine.
# Log: $DATA_DIR/dockerd.log; pid: $DATA_DIR/dockerd.pid.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

timeout="${DORA_DOCKERD_TIMEOUT:-60}"
pidfile="$DATA_DIR/dockerd.pid"
logfile="$DATA_DIR/dockerd.log"

docker_ok() {
  docker info >/dev/null 2>&1
}

command -v docker >/dev/null 2>&1 || die "no docker client: run hack/install-deps.sh"
if docker_ok; then
  log "docker engine is up"
  exit 0
fi

if pid_running "$pidfile" dockerd; then
  log "dockerd (pid $(<"$pidfile")) is starting; waiting for it"
else
  [[ "$(id -u)" == 0 ]] ||
    die "docker does not answer and only root can start dockerd: start it (e.g. sudo $0) or join the docker group"
  dockerd="$(command -v dockerd || echo /usr/sbin/dockerd)"
  [[ -x "$dockerd" ]] || die "no dockerd: run hack/install-deps.sh"
  log "starting dockerd (log: $logfile)"
  start_daemon "$pidfile" "$logfile" "$dockerd"
fi

# Stop waiting early if dockerd dies (a stale /var/run/docker.pid, no iptables, ...).
up_or_dead() {
  docker_ok || ! pid_running "$pidfile" dockerd
}
wait_for "$timeout" "docker info" up_or_dead || true
if ! docker_ok; then
  show_log_tail "$logfile"
  pid_running "$pidfile" dockerd || die "dockerd exited; see $logfile"
  die "dockerd did not answer within ${timeout}s; see $logfile"
fi
log "docker engine is up (dockerd pid $(<"$pidfile"))"
