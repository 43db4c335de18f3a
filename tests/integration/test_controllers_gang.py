"""Gang placement against the real apiserver on etcd, with simulated nodes: a gang
is bound all at once or not at all, and lives and dies together (the rank env
inside real containers: ``test_agent_gang``)."""

from __future__ import annotations

import anyio
import pytest

from dora.api import conventions, errors
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.controllers.scheduler import binder
from dora.controllers.scheduler.snapshot import Placement
from tests.integration.controllers_harness import (
    Controllers,
    SimNode,
    TaskGroup,
    containers,
    eventually,
    group,
    set_phase,
    workload,
)

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

A100 = "A100-SXM4-40GB"


def gang(name: str, *, replicas: int, gpus: int = 0, restart: str = "Never",
         affinity: str = "Fill") -> object_pb2.Object:
    obj = workload(name, replicas=replicas, gpus=gpus, products=[A100] if gpus else ("All",),
                   restart=restart, affinity=affinity)
    obj.workload.spec.replica.gang = True
    obj.workload.spec.network.mode = "host"
    return obj


def is_bound(obj: object_pb2.Object) -> bool:
    return conventions.NODE_LABEL in obj.metadata.labels


async def test_a_gang_of_4_on_3_free_gpus_waits_whole_then_binds_all_at_once(
        client: Client, group: TaskGroup) -> None:
    for name in ("gpu-1", "gpu-2"):
        await SimNode(client, name, gpus=[A100] * 2).start(group)
    Controllers(client).start(group)
    await client.apply(workload("blocker", gpus=1, products=[A100]))

    async def blocker_bound() -> bool:
        return any(is_bound(c) for c in await containers(client, "blocker"))

    await eventually(blocker_bound, within=20, what="the blocker bound")

    # Every event of the gang's containers, from before the gang exists.
    seen: list[object_pb2.Object] = []

    async def watch() -> None:
        async for event in client.watch(
                "Container", zone="default",
                label_selector=f"{conventions.WORKLOAD_LABEL}=train"):
            if event.type != WatchEvent.DELETED:
                seen.append(event.object)

    group.start_soon(watch)
    await anyio.sleep(0.2)
    await client.apply(gang("train", replicas=4, gpus=1))

    async def all_waiting() -> list[object_pb2.Object] | None:
        live = await containers(client, "train")
        waiting = [c for c in live if c.container.status.reason == "GangWaiting"
                   and "need 4 GPUs; 3 free" in c.container.status.conditions[0].message]
        return live if len(live) == 4 and len(waiting) == 4 else None

    waiting = await eventually(all_waiting, within=20, what="4 replicas GangWaiting")
    message = waiting[0].container.status.conditions[0].message
    assert message.startswith("4 replicas need 4 GPUs; 3 free"), message
    await anyio.sleep(1.0)  # the scheduler has had its chances (and its retries)
    assert not any(is_bound(c) for c in seen), "a partial gang was bound"
    assert not any(is_bound(c) for c in await containers(client, "train"))

    # A GPU frees: all four bind, on as few nodes as Fill can (two of two GPUs).
    await client.delete("Workload", "blocker", zone="default", workspace="default")

    async def all_bound() -> list[object_pb2.Object] | None:
        live = await containers(client, "train")
        return live if len(live) == 4 and all(is_bound(c) for c in live) else None

    bound = await eventually(all_bound, within=20, what="the whole gang bound")
    nodes = sorted(c.container.spec.node_name for c in bound)
    assert nodes == ["gpu-1", "gpu-1", "gpu-2", "gpu-2"]
    used = [(c.container.spec.node_name, g.index) for c in bound for g in c.container.spec.gpus]
    assert len(set(used)) == 4
    rank0 = next(c for c in bound if c.container.spec.replica_index == 0)
    # Replica 0's node address (a SimNode's endpoint is `<name>:3001`) and the host port.
    master = f"{rank0.container.spec.node_name}:29500"
    assert {c.container.spec.gang_master for c in bound} == {master}


async def test_a_gang_that_cannot_fit_at_all_never_holds_a_gpu(client: Client,
                                                                group: TaskGroup) -> None:
    await SimNode(client, "gpu-1", gpus=[A100] * 2).start(group)
    Controllers(client).start(group)
    await client.apply(gang("big", replicas=3, gpus=1))
    await client.apply(workload("small", gpus=1, products=[A100]))

    async def small_bound() -> bool:
        return any(is_bound(c) for c in await containers(client, "small"))

    # The gang waiting holds nothing: a single container still gets a GPU.
    await eventually(small_bound, within=20, what="the small container bound")
    assert not any(is_bound(c) for c in await containers(client, "big"))


async def test_a_bind_failing_mid_gang_releases_the_replicas_already_bound(
        client: Client, group: TaskGroup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the choice and the binds, replica 1's labels change (it is bound again at
    its new version) and replica 2 is deleted (it cannot be bound): replicas 0 and 1,
    already bound, are deleted, and the gang made again is bound whole."""
    real_bind = binder.bind
    first_try: list[object_pb2.Object] = []
    raced: list[int] = []

    async def racing_bind(client_: Client, container: object_pb2.Object,
                          placement: Placement, *, master: str = "") -> object_pb2.Object:
        index = container.container.spec.replica_index
        if index in (1, 2) and index not in raced:
            raced.append(index)
            if index == 1:
                changed = await client.get("Container", container.metadata.name,
                                           zone="default", workspace="default")
                changed.metadata.labels["touched"] = "yes"
                await client.apply(changed)
            else:
                await client.delete("Container", container.metadata.name,
                                    zone="default", workspace="default")
        result = await real_bind(client_, container, placement, master=master)
        if len(raced) < 2:
            first_try.append(result)
        return result

    monkeypatch.setattr(binder, "bind", racing_bind)
    await SimNode(client, "gpu-1", gpus=[A100] * 4).start(group)
    Controllers(client).start(group)
    await client.apply(gang("train", replicas=4, gpus=1))

    async def all_bound() -> list[object_pb2.Object] | None:
        live = await containers(client, "train")
        return live if len(live) == 4 and all(is_bound(c) for c in live) else None

    bound = await eventually(all_bound, within=30, what="the gang bound whole")
    assert raced == [1, 2]
    assert sorted(c.container.spec.replica_index for c in first_try) == [0, 1]
    assert first_try[1].metadata.labels["touched"] == "yes", "bound at its new version"
    assert not {c.metadata.uid for c in first_try} & {c.metadata.uid for c in bound}, (
        "the replicas bound by the failed try were released")
    assert sorted(c.container.spec.replica_index for c in bound) == [0, 1, 2, 3]
    assert sorted(g.index for c in bound for g in c.container.spec.gpus) == [0, 1, 2, 3]


async def test_restart_always_restarts_the_gang_together(client: Client,
                                                         group: TaskGroup) -> None:
    for name in ("cpu-1", "cpu-2"):
        await SimNode(client, name).start(group)
    Controllers(client).start(group)
    await client.apply(gang("job", replicas=3, restart="Always"))

    async def running() -> list[object_pb2.Object] | None:
        live = await containers(client, "job")
        ok = len(live) == 3 and all(c.container.status.phase == "Running" for c in live)
        return live if ok else None

    first = await eventually(running, within=20, what="the gang running")
    before = {c.metadata.uid for c in first}
    await set_phase(client, first[1], "Failed")

    async def replaced() -> bool:
        live = await running()
        return live is not None and not ({c.metadata.uid for c in live} & before)

    await eventually(replaced, within=30, what="all three replicas made again")


async def test_restart_never_fails_the_gang_together(client: Client,
                                                     group: TaskGroup) -> None:
    await SimNode(client, "cpu-1").start(group)
    Controllers(client).start(group)
    await client.apply(gang("job", replicas=3, restart="Never"))

    async def running() -> list[object_pb2.Object] | None:
        live = await containers(client, "job")
        ok = len(live) == 3 and all(c.container.status.phase == "Running" for c in live)
        return live if ok else None

    first = await eventually(running, within=20, what="the gang running")
    await set_phase(client, first[2], "Failed")

    async def only_the_failed_one() -> list[object_pb2.Object] | None:
        items = await containers(client, "job", live=False)
        return items if [c.metadata.name for c in items] == [first[2].metadata.name] else None

    await eventually(only_the_failed_one, within=20, what="the others deleted")
    await anyio.sleep(1.0)
    [left] = await containers(client, "job", live=False)
    assert left.container.status.phase == "Failed", "nothing made again"


async def test_a_gang_needs_a_network_and_a_replica(client: Client) -> None:
    obj = gang("bad", replicas=0)
    obj.workload.spec.network.mode = "none"
    with pytest.raises(errors.Invalid) as caught:
        await client.apply(obj)
    fields = {v.field for v in caught.value.violations}
    assert {"spec.replica.count", "spec.network.mode"} <= fields, fields
    with pytest.raises(errors.NotFound):
        await client.get("Workload", "bad", zone="default", workspace="default")
