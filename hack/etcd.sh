#!/usr/bin/env bash
# The single-member etcd behind `make up`; tests never use it (their fixture starts a
# private etcd on free ports).
#
#   hack/etcd.sh start|stop|status
#
# Client URL http://127.0.0.1:${DORA_ETCD_PORT:-2379}, peer URL
# http://127.0.0.1:${DORA_ETCD_PEER_PORT:-2380}; data in $DATA_DIR/etcd (kept by stop),
# log in $DATA_DIR/etcd.log, pid in $DATA_DIR/etcd.pid. start and stop are idempotent.
# status exits 0 when etcd is healthy, 1 when it runs but is unhealthy, 3 when it is
# not running.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

export ETCDCTL_API=3
client_port="${DORA_ETCD_PORT:-2379}"
peer_port="${DORA_ETCD_PEER_PORT:-2380}"
client_url="http://127.0.0.1:$client_port"
peer_url="http://127.0.0.1:$peer_port"
pidfile="$DATA_DIR/etcd.pid"
logfile="$DATA_DIR/etcd.log"
timeout="${DORA_ETCD_TIMEOUT:-30}"

# The port probe first: etcdctl takes its whole command timeout to give up on a
# closed port.
healthy() {
  port_open 127.0.0.1 "$client_port" &&
    etcdctl --endpoints "$client_url" --dial-timeout=1s --command-timeout=2s \
      endpoint health >/dev/null 2>&1
}

healthy_or_dead() {
  healthy || ! pid_running "$pidfile" etcd
}

start() {
  command -v etcd >/dev/null 2>&1 || die "no etcd: run hack/install-deps.sh"
  command -v etcdctl >/dev/null 2>&1 || die "no etcdctl: run hack/install-deps.sh"
  if pid_running "$pidfile" etcd; then
    log "etcd (pid $(<"$pidfile")) is running; checking its health"
  elif healthy; then
    log "an etcd this script did not start answers at $client_url; using it"
    return 0
  elif port_open 127.0.0.1 "$client_port" || port_open 127.0.0.1 "$peer_port"; then
    die "port $client_port or $peer_port is taken by something else (set DORA_ETCD_PORT / DORA_ETCD_PEER_PORT)"
  else
    mkdir -p "$DATA_DIR/etcd"
    chmod 700 "$DATA_DIR/etcd"
    log "starting etcd at $client_url (data: $DATA_DIR/etcd, log: $logfile)"
    start_daemon "$pidfile" "$logfile" etcd \
      --name dora \
      --data-dir "$DATA_DIR/etcd" \
      --listen-client-urls "$client_url" \
      --advertise-client-urls "$client_url" \
      --listen-peer-urls "$peer_url" \
      --initial-advertise-peer-urls "$peer_url" \
      --initial-cluster "dora=$peer_url" \
      --initial-cluster-state new \
      --logger zap
  fi
  wait_for "$timeout" "etcd health" healthy_or_dead || true
  if ! healthy; then
    show_log_tail "$logfile"
    die "etcd is not healthy at $client_url; see $logfile"
  fi
  log "etcd is healthy at $client_url (pid $(<"$pidfile"))"
}

stop() {
  stop_pidfile "$pidfile" etcd 15
}

status() {
  if ! pid_running "$pidfile" etcd; then
    if healthy; then
      echo "etcd: not started by hack/etcd.sh, but one answers at $client_url"
      return 0
    fi
    echo "etcd: not running"
    return 3
  fi
  if healthy; then
    echo "etcd: running (pid $(<"$pidfile")), healthy at $client_url"
  else
    echo "etcd: running (pid $(<"$pidfile")), NOT healthy at $client_url (log: $logfile)"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
