#!/usr/bin/env bash
# `make down`: stops what `make up` started (dora-web, agent, controllers, apiserver, then etcd)
# through their pidfiles: SIGTERM, a grace period, then SIGKILL. Keeps $DATA_DIR (etcd data, token,
# logs) and leaves dockerd running, since other things share it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

stop_pidfile "$DATA_DIR/web.pid" dora-web 15
stop_pidfile "$DATA_DIR/agent.pid" dora-agent 15
stop_pidfile "$DATA_DIR/controllers.pid" dora-controllers 15
stop_pidfile "$DATA_DIR/apiserver.pid" dora-apiserver 15
hack/etcd.sh stop
log "down; data kept in $DATA_DIR"
