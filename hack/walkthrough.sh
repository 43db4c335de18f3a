#!/usr/bin/env bash
# `make walkthrough` (and CI): the README's walk-through, scripted, on a cluster that
# `make up` starts from nothing on this machine's own Docker engine.
#
# It never touches the cluster a person runs: the cluster lives in a temporary data
# dir, on its own ports (apiserver 23000, etcd 22379/22380, agent 23001), with its own
# doractl profile and node name, and is stopped and removed at the end, pass or fail.
#
# Steps, each as a newcomer types them: make up (twice: the second finds it running),
# doractl get nodes, apply examples/01-hello.yaml, its container Running in Docker,
# doractl logs, doractl exec (the remote exit code comes back), examples/04-volumes.yaml
# (a file the workload writes is downloaded, a synced folder is seen inside), make
# down + make up (the workload is still there and its container was adopted, not
# restarted), delete.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

work="$(mktemp -d /tmp/dora-walkthrough.XXXXXX)"
export DORA_DATA_DIR="$work/data"
export DORA_CONFIG="$work/config.yaml"
export DORA_API_PORT="${DORA_WALKTHROUGH_API_PORT:-23000}"
export DORA_ETCD_PORT="${DORA_WALKTHROUGH_ETCD_PORT:-22379}"
export DORA_ETCD_PEER_PORT="${DORA_WALKTHROUGH_ETCD_PEER_PORT:-22380}"
export DORA_AGENT_PORT="${DORA_WALKTHROUGH_AGENT_PORT:-23001}"
export DORA_WEB_LISTEN="127.0.0.1:${DORA_WALKTHROUGH_WEB_PORT:-28080}"
export DORA_NODE_NAME="walkthrough-$$"
unset DORA_SERVER DORA_TOKEN DORA_CONTEXT

step() {
  printf '\n\033[1m== %s\033[0m\n' "$*" >&2
}

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    for f in apiserver dora-controllers dora-agent; do
      [[ -f "$DORA_DATA_DIR/$f.log" ]] && show_log_tail "$DORA_DATA_DIR/$f.log"
    done
  fi
  hack/down.sh >/dev/null 2>&1 || true
  docker ps -aq --filter "label=dora.node=$DORA_NODE_NAME" | xargs -r docker rm -f >/dev/null 2>&1 || true
  rm -rf "$work"
  if ((rc == 0)); then
    log "walk-through passed"
  else
    log "error: walk-through failed (exit $rc)"
  fi
  exit "$rc"
}
trap cleanup EXIT

# eventually SECONDS WHAT CMD...: runs CMD until it succeeds, or fails naming WHAT.
eventually() {
  local seconds="$1" what="$2"
  shift 2
  wait_for "$seconds" "$what" "$@" || die "timed out after ${seconds}s waiting for $what"
}

phase_of() {
  doractl get container "$1" -o json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("status", {}).get("phase", ""))'
}

is_running() {
  [[ "$(phase_of "$1")" == Running ]]
}

node_ready() {
  doractl get nodes "$DORA_NODE_NAME" | grep -q Ready
}

docker_id_of() {
  docker ps -q --no-trunc --filter "label=dora.node=$DORA_NODE_NAME" \
    --filter "label=dora.container=$1"
}

step "make up, from nothing"
make --no-print-directory up
step "make up again: it finds the cluster running"
make --no-print-directory up
use_venv

step "doractl get nodes"
eventually 60 "node $DORA_NODE_NAME Ready" node_ready
doractl get nodes

step "doractl apply -f examples/01-hello.yaml"
out="$(doractl apply -f examples/01-hello.yaml)"
echo "$out"
[[ "$out" == "workload/hello created" ]] || die "expected 'workload/hello created', got '$out'"

step "doractl get containers"
eventually 60 "hello.0 Running" is_running hello.0
doractl get containers
docker_id="$(docker_id_of hello.0)"
[[ -n "$docker_id" ]] || die "no Docker container runs hello.0 on node $DORA_NODE_NAME"
log "docker runs hello.0 as ${docker_id:0:12}"

step "doractl logs hello.0"
has_logs() {
  doractl logs hello.0 | grep -q "hello from"
}
eventually 30 "hello.0's log lines" has_logs
doractl logs --tail 2 hello.0

step "doractl exec hello.0 -- sh -c 'echo inside; exit 3'"
rc=0
out="$(doractl exec hello.0 -- sh -c 'echo inside; exit 3')" || rc=$?
echo "$out"
[[ "$out" == inside ]] || die "exec printed '$out', expected 'inside'"
((rc == 3)) || die "exec exited $rc, expected the remote exit code 3"

step "doractl apply -f examples/04-volumes.yaml; files in and out of the volume"
doractl apply -f examples/04-volumes.yaml
eventually 60 "notes-writer.0 Running" is_running notes-writer.0
has_notes() {
  doractl volume download notes:hello.txt "$work/hello.txt" >/dev/null 2>&1 &&
    [[ -s "$work/hello.txt" ]]
}
eventually 30 "hello.txt written by the workload, downloaded" has_notes
log "notes:hello.txt starts with: $(head -1 "$work/hello.txt")"
mkdir -p "$work/code"
echo "print('hi')" >"$work/code/train.py"
doractl sync --once "$work/code" notes:/code
out="$(doractl exec notes-writer.0 -- cat /notes/code/train.py)"
[[ "$out" == "print('hi')" ]] || die "the container sees '$out' in /notes/code/train.py"
doractl delete workload notes-writer --wait
doractl delete volume notes --wait

step "make down, make up: nothing is lost, nothing restarted"
make --no-print-directory down
make --no-print-directory up
eventually 60 "node $DORA_NODE_NAME Ready again" node_ready
doractl get workload hello >/dev/null
eventually 60 "hello.0 Running again" is_running hello.0
[[ "$(docker_id_of hello.0)" == "$docker_id" ]] ||
  die "hello.0 runs as $(docker_id_of hello.0), not the adopted $docker_id"

step "doractl delete workload hello --wait"
doractl delete workload hello --wait
no_docker_container() {
  [[ -z "$(docker_id_of hello.0)" ]]
}
eventually 30 "hello.0's Docker container gone" no_docker_container
