"""Failures: the leading controller replica dies mid-flow; a node's agent dies."""

from __future__ import annotations

import time

import anyio
import pytest

from dora.api import conventions, errors
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
from tests.integration.controllers_harness import (
    TTL,
    Controllers,
    SimNode,
    TaskGroup,
    admin_client,
    containers,
    eventually,
    group,
    workload,
)

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]


async def is_holder(client: Client, identity: str) -> bool:
    return await holder(client) == identity


async def holder(client: Client) -> str:
    try:
        lease = await client.get("Lease", conventions.CONTROLLERS_LEASE, zone="default")
    except errors.NotFound:
        return ""
    return lease.lease.spec.holder


async def test_one_replica_leads_and_the_standby_finishes_the_work(
        client: Client, group: TaskGroup, apiserver: APIServer, admin_token: str) -> None:
    for index in range(2):
        await SimNode(client, f"node-{index}", gpus=["Tesla V100-SXM2-16GB"] * 4).start(group)
    async with admin_client(apiserver, admin_token) as own:
        first = Controllers(own, identity="first")
        first.start(group)
        await eventually(lambda: is_holder(client, "first"), what="first leading")
        await _standby_takes_over(client, group, first)


async def _standby_takes_over(client: Client, group: TaskGroup, first: Controllers) -> None:
    second = Controllers(client, identity="second")
    second.start(group)
    await second.manager.wait_synced()
    await anyio.sleep(0.3)  # measured: synced and a while on, it still does not lead
    assert not second.manager.is_leading, "exactly one replica leads"

    await client.apply(workload("job", replicas=6, gpus=1))

    async def some_placed() -> bool:
        live = await containers(client, "job")
        return any(conventions.NODE_LABEL in c.metadata.labels for c in live)
    await eventually(some_placed, what="the first containers placed")
    await first.kill()  # mid-flow, without giving its lease back
    killed_at = time.monotonic()
    assert await holder(client) == "first"

    await eventually(lambda: is_holder(client, "second"), within=TTL + 5,
                     what="the standby leading")
    assert time.monotonic() - killed_at < TTL + 3

    async def done() -> list[object_pb2.Object] | None:
        live = await containers(client, "job")
        running = [c for c in live if c.container.status.phase == "Running"]
        return live if len(running) == 6 and len(live) == 6 else None
    live = await eventually(done, within=15, what="6 running containers")
    assert sorted(c.metadata.name for c in live) == [f"job.{i}" for i in range(6)]
    everything = await containers(client, live=False)
    assert len(everything) == 6, "no duplicate container"
    gpus = [(c.container.spec.node_name, g.index) for c in live for g in c.container.spec.gpus]
    assert len(gpus) == len(set(gpus)) == 6

    async def reported() -> bool:
        wl = await client.get("Workload", "job")
        return wl.workload.status.ready_replicas == 6
    await eventually(reported, what="the new leader reporting 6 ready")


async def test_a_dead_nodes_containers_run_elsewhere_within_ttl(client: Client,
                                                               group: TaskGroup) -> None:
    doomed = SimNode(client, "a-doomed")
    spare = SimNode(client, "b-spare")
    await doomed.start(group)
    await spare.start(group)
    Controllers(client).start(group)
    await client.apply(workload("svc", replicas=2, affinity="First"))

    async def on(node: str) -> list[object_pb2.Object] | None:
        live = await containers(client, "svc")
        ok = len(live) == 2 and all(c.container.spec.node_name == node
                                    and c.container.status.phase == "Running" for c in live)
        return live if ok else None
    before = await eventually(lambda: on("a-doomed"), what="svc running on a-doomed")

    doomed.kill()
    killed_at = time.monotonic()
    after = await eventually(lambda: on("b-spare"), within=TTL + 5,
                             what="svc running on b-spare")
    assert time.monotonic() - killed_at < TTL + 5
    assert not {c.metadata.uid for c in before} & {c.metadata.uid for c in after}

    node = await client.get("Node", "a-doomed")
    assert node.node.status.phase == "NotReady"
    ready = {c.type: c for c in node.node.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "NodeLeaseExpired")
    events, _ = await client.list("Event")
    assert "ContainerLost" in {e.event.spec.reason for e in events}
