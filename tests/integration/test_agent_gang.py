"""A gang's replicas on the real Docker engine know their rank, the world size and
where rank 0 listens (Dora's names and torchrun's), and rank 0 is reachable there.

Real etcd, the real apiserver, the real controllers (the scheduler binds the gang
and writes rank 0's address), a real agent on the real dockerd (its node's endpoint
is 127.0.0.1), read with ``exec``.
"""

from __future__ import annotations

import pytest

from dora.api import objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import Controllers
from tests.integration.test_agent_interactive import (
    apiserver_config,
    cluster,
    containers_in,
    controllers,
    env_of,
    exec_out,
    node,
)
from tests.integration.test_streams import Cluster

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["apiserver_config", "cluster", "controllers", "node"]


def gang_workload(name: str, *, replicas: int) -> object_pb2.Object:
    obj = objects.new("Workload", name, zone=h.ZONE, workspace=h.WORKSPACE)
    obj.metadata.labels["app"] = "x"
    spec = obj.workload.spec
    spec.replica.count = replicas
    spec.replica.gang = True
    spec.network.mode = "host"
    spec.image.image, spec.image.pull_policy = h.BUSYBOX, "Never"
    spec.selectors.cpu.millicores = 100
    spec.config.affinity = "Fill"
    # Rank 0 answers on the master port (as torchrun's store would listen there).
    spec.config.cmd = ("sh -c 'if [ \"$RANK\" = 0 ]; then exec nc -ll -p \"$MASTER_PORT\" "
                       "-e echo pong; else exec sleep 3600; fi'")
    return obj


async def test_gang_replicas_see_their_rank_and_rank_0s_address(
        cluster: Cluster, controllers: Controllers) -> None:
    client: Client = cluster.client
    await client.apply(gang_workload("ddp", replicas=3))
    found = await containers_in(client, "Running", 3)
    for container in found:
        seen = await env_of(client, container.metadata.name)
        rank = str(container.container.spec.replica_index)
        assert {k: seen[k] for k in ("DORA_RANK", "DORA_WORLD_SIZE", "DORA_MASTER_ADDR",
                                     "DORA_MASTER_PORT")} == {
            "DORA_RANK": rank, "DORA_WORLD_SIZE": "3", "DORA_MASTER_ADDR": "127.0.0.1",
            "DORA_MASTER_PORT": "29500"}
        assert {k: seen[k] for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                     "NODE_RANK", "LOCAL_RANK")} == {
            "RANK": rank, "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29500", "NODE_RANK": rank, "LOCAL_RANK": "0"}
    assert sorted(c.container.spec.replica_index for c in found) == [0, 1, 2]
    # Host networking: another rank reaches rank 0 at MASTER_ADDR:MASTER_PORT.
    rank1 = next(c for c in found if c.container.spec.replica_index == 1)
    answer = await exec_out(client, rank1.metadata.name, "sh", "-c",
                            'nc -w 5 "$MASTER_ADDR" "$MASTER_PORT" </dev/null')
    assert answer.strip() == "pong"
