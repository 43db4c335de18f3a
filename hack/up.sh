#!/usr/bin/env bash
# `make up`: a local Dora on this machine. Installs what is missing, starts dockerd,
# builds the busybox image, starts etcd and the apiserver in the background, and runs
# hack/bootstrap.sh (default zone/workspace, doractl profile) when it exists. Safe to
# run again: whatever already runs and answers is left alone.
#
# Everything lives in $DATA_DIR (${DORA_DATA_DIR:-~/.local/share/dora}): pids, logs,
# etcd data, the admin token. `make down` stops the daemons and keeps the data.
# Ports: apiserver ${DORA_API_PORT:-3000}, etcd ${DORA_ETCD_PORT:-2379}/${DORA_ETCD_PEER_PORT:-2380}.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

api_host=127.0.0.1
api_port="${DORA_API_PORT:-3000}"
etcd_port="${DORA_ETCD_PORT:-2379}"
pidfile="$DATA_DIR/apiserver.pid"
logfile="$DATA_DIR/apiserver.log"
token_file="$DATA_DIR/admin.token"
timeout="${DORA_APISERVER_TIMEOUT:-30}"

hack/install-deps.sh
hack/venv.sh
hack/start-dockerd.sh
hack/busybox-image.sh
hack/etcd.sh start
use_venv

apiserver_up() {
  port_open "$api_host" "$api_port"
}

up_or_dead() {
  apiserver_up || ! pid_running "$pidfile" dora-apiserver
}

if pid_running "$pidfile" dora-apiserver; then
  if wait_for "$timeout" "the apiserver on $api_host:$api_port" apiserver_up; then
    log "dora-apiserver (pid $(<"$pidfile")) is already up on $api_host:$api_port"
  else
    log "dora-apiserver (pid $(<"$pidfile")) does not answer; restarting it"
    stop_pidfile "$pidfile" dora-apiserver 15
  fi
elif apiserver_up; then
  die "port $api_port is taken by something hack/up.sh did not start (set DORA_API_PORT)"
fi

if ! pid_running "$pidfile" dora-apiserver; then
  mkdir -p "$DATA_DIR"
  log "starting dora-apiserver on $api_host:$api_port (log: $logfile)"
  start_daemon "$pidfile" "$logfile" "$VENV/bin/dora-apiserver" \
    --etcd-endpoints "127.0.0.1:$etcd_port" \
    --listen "$api_host:$api_port" \
    --admin-token-file "$token_file"
  wait_for "$timeout" "the apiserver on $api_host:$api_port" up_or_dead || true
  if ! apiserver_up; then
    show_log_tail "$logfile"
    die "dora-apiserver did not come up on $api_host:$api_port; see $logfile"
  fi
  log "dora-apiserver is up on $api_host:$api_port (pid $(<"$pidfile"))"
fi

if [[ -x hack/bootstrap.sh ]]; then
  DORA_DATA_DIR="$DATA_DIR" \
    DORA_API_ADDR="$api_host:$api_port" \
    DORA_ADMIN_TOKEN_FILE="$token_file" \
    hack/bootstrap.sh
fi

cat <<EOF

Dora is up: apiserver $api_host:$api_port, etcd 127.0.0.1:$etcd_port, logs in $DATA_DIR.
Next:

    source .venv/bin/activate
    doractl get zones
    make down        # stops the apiserver and etcd, keeps the data

EOF
