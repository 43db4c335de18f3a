#!/usr/bin/env bash
# Called by hack/up.sh once the apiserver answers: writes the admin's doractl
# profile (context "local"), applies the local cluster's own objects
# (hack/local-cluster.yaml: a Local storage under $DATA_DIR, seed 004's node-rep
# role and node user, the local Node) and makes the node token the agent uses.
# The default zone and workspace come from the apiserver's first start. Safe to run
# again: the profile is rewritten from the admin token file, apply is idempotent and
# an existing node token is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh
use_venv

api="${DORA_API_ADDR:-127.0.0.1:${DORA_API_PORT:-3000}}"
token_file="${DORA_ADMIN_TOKEN_FILE:-$DATA_DIR/admin.token}"
# The agent's identity, bound to its node (doractl token create --node): an older
# node.token made without a node is no longer accepted by the apiserver.
node_token_file="$DATA_DIR/node-${DORA_NODE_NAME:-local}.token"
node_name="${DORA_NODE_NAME:-local}"
agent_addr="${DORA_AGENT_ADDR:-127.0.0.1:${DORA_AGENT_PORT:-3001}}"

[[ -s "$token_file" ]] || die "no admin token in $token_file: this etcd was initialised \
elsewhere; put its admin token there and run make up again"
doractl config set-context local --server "$api" --token "$(<"$token_file")" \
  --zone default --workspace default >/dev/null
doractl config use-context local >/dev/null
log "doractl profile: context 'local' in ${DORA_CONFIG:-~/.dora/config.yaml}"

# An open port is not an apiserver that serves: after an etcd restart it may still
# be reconnecting ("connection refused" from etcd). Wait until a read goes through.
answers() {
  doractl get zones -o name >/dev/null 2>&1
}
wait_for "${DORA_APISERVER_TIMEOUT:-30}" "the apiserver to serve reads" answers ||
  die "the apiserver at $api does not serve reads; see $DATA_DIR/apiserver.log"

mkdir -p "$DATA_DIR/storage"
doractl apply -f hack/local-cluster.yaml -e "DORA_STORAGE_PATH=$DATA_DIR/storage" \
  -e "DORA_NODE_NAME=$node_name" -e "DORA_AGENT_ADDR=$agent_addr"

if [[ ! -s "$node_token_file" ]]; then
  # A token of that id left from a lost file is revoked first: it is shown only once.
  doractl token revoke node "agent-$node_name" >/dev/null 2>&1 || true
  (umask 077 && doractl token create node node "agent-$node_name" --node "$node_name" \
    --quiet >"$node_token_file")
  log "node token for the agent: $node_token_file"
fi
