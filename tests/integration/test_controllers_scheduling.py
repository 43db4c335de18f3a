"""The scheduler against the real apiserver: GPUs by product, node capabilities, node
ports (no GPU given twice under many binds at once: ``test_scheduler_binds``)."""

from __future__ import annotations

import collections

import pytest

from dora.api import conventions
from dora.api.client import Client
from dora.api.v1 import object_pb2
from tests.integration.controllers_harness import (
    Controllers,
    SimNode,
    TaskGroup,
    containers,
    eventually,
    group,
    workload,
)

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

QUADRO, V100, A100 = "Quadro RTX 6000", "Tesla V100-SXM2-16GB", "A100-SXM4-40GB"


async def bound(client: Client, name: str, count: int, *, total: int | None = None
                ) -> list[object_pb2.Object]:
    """The live containers of ``name`` once ``count`` of them (of ``total``) are bound."""

    async def check() -> list[object_pb2.Object] | None:
        live = await containers(client, name)
        done = [c for c in live if conventions.NODE_LABEL in c.metadata.labels]
        return live if len(done) == count and len(live) == (total or count) else None

    result: list[object_pb2.Object] = await eventually(
        check, within=20, what=f"{count} bound containers of {name}")
    return result


async def test_gpus_are_placed_by_product_and_never_shared(client: Client,
                                                           group: TaskGroup) -> None:
    nodes = [
        SimNode(client, "cpu-1", allow=["CPUWorkload"]),
        SimNode(client, "quadro-1", gpus=[QUADRO] * 4, allow=["GPUWorkload"]),
        SimNode(client, "v100-1", gpus=[A100, V100, A100, V100], allow=["GPUWorkload"]),
    ]
    for node in nodes:
        await node.start(group)
    Controllers(client).start(group)

    await client.apply(workload("render", replicas=2, gpus=2, products=[QUADRO, V100]))
    render = await bound(client, "render", 2)
    await client.apply(workload("train", replicas=2, gpus=2, products=[V100]))
    await client.apply(workload("web", replicas=2, cpu=2))
    train = await bound(client, "train", 1, total=2)
    web = await bound(client, "web", 2)

    assert {c.container.spec.node_name for c in web} == {"cpu-1"}
    assert {c.container.spec.node_name for c in render} == {"quadro-1"}
    [placed] = [c for c in train if c.container.spec.node_name]
    assert placed.container.spec.node_name == "v100-1"
    assert [(g.index, g.product_name) for g in placed.container.spec.gpus] == [
        (1, V100), (3, V100)]
    node = await client.get("Node", "v100-1")
    assert {(g.index, g.uuid) for g in placed.container.spec.gpus} <= {
        (g.index, g.uuid) for g in node.node.status.gpus}

    used = collections.Counter(
        (c.container.spec.node_name, g.index)
        for c in [*train, *render] if c.container.spec.node_name for g in c.container.spec.gpus
    )
    assert set(used.values()) == {1}, used

    async def reason() -> str:
        wl = await client.get("Workload", "train")
        conds = {c.type: c for c in wl.workload.status.conditions}
        return conds["Unschedulable"].message if "Unschedulable" in conds else ""
    message = await eventually(reason, what="train's second container unschedulable")
    assert f"no node has 2 free GPUs of [{V100}]" in message
    assert "3 nodes" in message


async def test_waiting_containers_are_placed_when_capacity_frees(client: Client,
                                                                 group: TaskGroup) -> None:
    node = SimNode(client, "v100-1", gpus=[V100] * 2)
    await node.start(group)
    Controllers(client).start(group)
    await client.apply(workload("a", replicas=1, gpus=2, products=[V100]))
    await bound(client, "a", 1)
    await client.apply(workload("b", replicas=1, gpus=1, products=[V100]))

    async def waiting() -> bool:
        live = await containers(client, "b")
        return len(live) == 1 and live[0].container.status.phase == "Pending" and any(
            c.reason == "Unschedulable" for c in live[0].container.status.conditions)
    await eventually(waiting, what="b waiting")
    [b] = await containers(client, "b")
    reason = {c.type: c for c in b.container.status.conditions}["Scheduled"]
    assert reason.reason == "Unschedulable"
    assert reason.message.startswith(f"no node has 1 free GPU of [{V100}]")

    await client.delete("Workload", "a")
    [b] = await bound(client, "b", 1)
    assert b.container.spec.node_name == "v100-1"


async def test_two_containers_asking_for_one_node_port_never_share_a_node(
        client: Client, group: TaskGroup) -> None:
    await SimNode(client, "only-1", cpus=8).start(group)
    Controllers(client).start(group)
    web = workload("web", replicas=2)
    web.workload.spec.network.mode = "bridge"
    web.workload.spec.network.ports.add(name="http", port=8008, node_port=25000)
    await client.apply(web)
    live = await bound(client, "web", 1, total=2)
    [running] = [c for c in live if c.container.spec.node_name]
    [pending] = [c for c in live if not c.container.spec.node_name]
    assert running.container.spec.node_name == "only-1"

    async def why() -> str:
        container = await client.get("Container", pending.metadata.name)
        condition = {c.type: c for c in container.container.status.conditions}.get("Scheduled")
        return condition.message if condition is not None and condition.status == "False" else ""

    message = await eventually(why, within=20, what="the pending container's reason")
    assert "nodePort 25000/tcp" in message, message
    assert message.endswith("(1 node: 1 with nodePort 25000/tcp in use)"), message
    pending_now = await client.get("Container", pending.metadata.name)
    assert pending_now.container.status.phase in ("", "Pending")
    # Another port is free on the same node.
    other = workload("api", replicas=1)
    other.workload.spec.network.mode = "bridge"
    other.workload.spec.network.ports.add(name="http", port=8008, node_port=25001)
    await client.apply(other)
    [api] = await bound(client, "api", 1)
    assert api.container.spec.node_name == "only-1"
