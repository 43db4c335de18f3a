#!/usr/bin/env bash
# `make up`: a local Dora on this machine. Installs what is missing, starts dockerd,
# builds the busybox image, starts etcd and the apiserver in the background, runs
# hack/bootstrap.sh (doractl profile, storage, the local Node and its token), then
# starts the controllers and the agent. Safe to
# run again: whatever already runs and answers is left alone.
#
# Everything lives in $DATA_DIR (${DORA_DATA_DIR:-~/.local/share/dora}): pids, logs,
# etcd data, the admin token. `make down` stops the daemons and keeps the data.
# Ports: apiserver ${DORA_API_PORT:-3000}, etcd ${DORA_ETCD_PORT:-2379}/${DORA_ETCD_PEER_PORT:-2380},
# agent ${DORA_AGENT_PORT:-3001}, the web app (dora-web) ${DORA_WEB_LISTEN:-127.0.0.1:8080}.
# The local node is ${DORA_NODE_NAME:-local}.
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
# The secret the apiserver presents to agents for logs/exec (made once, kept).
agent_secret_file="$DATA_DIR/agent.secret"
node_name="${DORA_NODE_NAME:-local}"
agent_addr="127.0.0.1:${DORA_AGENT_PORT:-3001}"
timeout="${DORA_APISERVER_TIMEOUT:-30}"
web_listen="${DORA_WEB_LISTEN:-127.0.0.1:8080}"

hack/install-deps.sh
hack/venv.sh
hack/start-dockerd.sh
hack/busybox-image.sh
hack/etcd.sh start
hack/web-build.sh
use_venv

apiserver_up() {
  port_open "$api_host" "$api_port"
}

up_or_dead() {
  apiserver_up || ! pid_running "$pidfile" dora-apiserver
}

if [[ ! -s "$agent_secret_file" ]]; then
  mkdir -p "$DATA_DIR"
  (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' \
    > "$agent_secret_file")
  log "made the agent secret $agent_secret_file"
  # An apiserver or agent of an older `make up` runs without it: logs and exec would
  # fail until they are restarted, so restart them now.
  if pid_running "$DATA_DIR/agent.pid" dora-agent; then
    stop_pidfile "$DATA_DIR/agent.pid" dora-agent 15
  fi
  if pid_running "$pidfile" dora-apiserver; then
    stop_pidfile "$pidfile" dora-apiserver 15
  fi
fi

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

first_start=0
[[ -s "$token_file" ]] || first_start=1

if ! pid_running "$pidfile" dora-apiserver; then
  mkdir -p "$DATA_DIR"
  log "starting dora-apiserver on $api_host:$api_port (log: $logfile)"
  start_daemon "$pidfile" "$logfile" "$VENV/bin/dora-apiserver" \
    --etcd-endpoints "127.0.0.1:$etcd_port" \
    --listen "$api_host:$api_port" \
    --admin-token-file "$token_file" \
    --agent-secret-file "$agent_secret_file"
  wait_for "$timeout" "the apiserver on $api_host:$api_port" up_or_dead || true
  if ! apiserver_up; then
    show_log_tail "$logfile"
    die "dora-apiserver did not come up on $api_host:$api_port; see $logfile"
  fi
  log "dora-apiserver is up on $api_host:$api_port (pid $(<"$pidfile"))"
fi

DORA_DATA_DIR="$DATA_DIR" \
  DORA_API_ADDR="$api_host:$api_port" \
  DORA_ADMIN_TOKEN_FILE="$token_file" \
  DORA_NODE_NAME="$node_name" \
  DORA_AGENT_ADDR="$agent_addr" \
  hack/bootstrap.sh

# ensure_daemon NAME PIDFILE CMD...: starts CMD unless it already runs, then checks
# that it is still alive a moment later (a bad flag or token shows at once).
ensure_daemon() {
  local name="$1" pidfile="$2" logfile="$DATA_DIR/$1.log"
  shift 2
  if pid_running "$pidfile" "$name"; then
    log "$name (pid $(<"$pidfile")) is already running"
    return 0
  fi
  log "starting $name (log: $logfile)"
  start_daemon "$pidfile" "$logfile" "$@"
  sleep 1
  if ! pid_running "$pidfile" "$name"; then
    show_log_tail "$logfile"
    die "$name exited at start; see $logfile"
  fi
}

ensure_daemon dora-controllers "$DATA_DIR/controllers.pid" \
  "$VENV/bin/dora-controllers" --server "$api_host:$api_port" --token-file "$token_file" \
  --zones all
ensure_daemon dora-agent "$DATA_DIR/agent.pid" \
  "$VENV/bin/dora-agent" --server "$api_host:$api_port" --token-file "$DATA_DIR/node-$node_name.token" \
  --node-name "$node_name" --zone default --listen "$agent_addr" \
  --agent-secret-file "$agent_secret_file"
# The web app's gateway: a client of the apiserver with each signed-in user's own
# token, so it needs none of its own (and the admin token never reaches its log).
ensure_daemon dora-web "$DATA_DIR/web.pid" \
  "$VENV/bin/dora-web" --server "$api_host:$api_port" --listen "$web_listen"
web_host="${web_listen%:*}"
web_port="${web_listen##*:}"
if ! wait_for "$timeout" "dora-web on $web_listen" port_open "$web_host" "$web_port"; then
  show_log_tail "$DATA_DIR/dora-web.log"
  die "dora-web did not come up on $web_listen; see $DATA_DIR/dora-web.log"
fi

if ((first_start)) && [[ -s "$token_file" ]]; then
  # The only time the admin token is shown: here, on this terminal. It is kept in
  # $token_file (mode 0600), never in a log.
  printf '\nThe admin token (kept in %s, shown only this once):\n\n    %s\n' \
    "$token_file" "$(<"$token_file")"
fi

cat <<EOF

Dora is up: apiserver $api_host:$api_port, etcd 127.0.0.1:$etcd_port, controllers, and an
agent for node '$node_name' on the local Docker engine; logs in $DATA_DIR.

The web app: http://$web_listen/ -- sign in with the admin token, which you can copy
from the file $token_file (for example: cat $token_file).

From a shell:

    source .venv/bin/activate
    doractl get nodes
    doractl apply -f examples/01-hello.yaml
    doractl get containers
    doractl logs -f workload/hello     # Ctrl-C stops
    doractl shell hello.0              # a shell in its first container
    make down        # stops everything, keeps the data

EOF
