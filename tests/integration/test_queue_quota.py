"""Quotas on real etcd, the real apiserver and the real controllers with simulated
nodes: a cap of 2 GPUs holds while 200 one-GPU workloads are applied at once; the
others wait with reason QuotaExceeded and go, two at a time, as GPUs free."""

from __future__ import annotations

import anyio
import pytest

from dora.api import errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
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

A100, V100 = "A100-SXM4-80GB", "Tesla V100-SXM2-16GB"


def quota(name: str, *, workspace: str = "", user: str = "", gpus: int | None = None,
          products: tuple[str, ...] = ("All",), millicores: int | None = None,
          count: int | None = None) -> object_pb2.Object:
    obj = objects.new("Quota", name, zone="default")
    spec = obj.quota.spec
    spec.workspace, spec.user = workspace, user
    if gpus is not None:
        spec.gpu.add(product_name=products, count=gpus)
    if millicores is not None:
        spec.cpu.millicores = millicores
    if count is not None:
        spec.containers = count
    return obj


def holds(container: object_pb2.Object) -> bool:
    return bool(container.container.spec.node_name) and (
        container.container.status.phase not in ("Exited", "Failed", "Lost"))


async def test_a_bad_quota_is_refused_naming_the_field(client: Client) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await client.apply(quota("both", workspace="default", user="alice", gpus=1))
    assert "spec.user" in str(caught.value)
    with pytest.raises(errors.Invalid) as caught:
        await client.apply(quota("nothing"))
    assert "gpu, cpu.millicores or containers" in str(caught.value)
    with pytest.raises(errors.Invalid) as caught:
        await client.apply(quota("negative", gpus=-1))
    assert "spec.gpu[0].count" in str(caught.value)
    items, _ = await client.list("Quota", zone="default")
    assert items == [], "nothing is written on a refused Apply"


async def test_a_quota_of_two_gpus_holds_under_200_concurrent_applies(
        client: Client, group: TaskGroup) -> None:
    for name in ("a100-1", "a100-2"):
        await SimNode(client, name, gpus=[A100] * 4).start(group)
    await client.apply(quota("lab", workspace="default", gpus=2))
    Controllers(client, controllers=("workload", "scheduler")).start(group)

    most = 0
    holding: dict[str, bool] = {}
    watching = anyio.CancelScope()

    async def watch() -> None:
        nonlocal most
        with watching:
            async for event in client.watch("Container", zone="default"):
                if event.type == WatchEvent.BOOKMARK:
                    continue
                name = event.object.metadata.name
                holding[name] = event.type != WatchEvent.DELETED and holds(event.object)
                most = max(most, sum(holding.values()))

    group.start_soon(watch)
    async with anyio.create_task_group() as applies:
        for i in range(200):
            applies.start_soon(client.apply, workload(f"w{i}", gpus=1))

    async def all_created_and_decided() -> list[object_pb2.Object] | None:
        found = await containers(client)
        waiting = [c for c in found if c.container.status.reason == "QuotaExceeded"]
        return found if len(found) == 200 and len(waiting) == 198 else None

    found = await eventually(all_created_and_decided, within=60,
                             what="200 containers, 198 waiting for the quota")
    running = [c for c in found if holds(c)]
    assert len(running) == 2
    waiting = next(c for c in found if not holds(c))
    [condition] = [c for c in waiting.container.status.conditions if c.type == "Scheduled"]
    assert (condition.status, condition.reason) == ("False", "QuotaExceeded")
    assert condition.message == "quota lab: 2 of 2 GPUs in use, this container needs 1"

    # One finishes: exactly one more goes.
    await set_phase(client, running[0], "Exited")

    async def replaced() -> bool:
        return sum(holds(c) for c in await containers(client)) == 2 and any(
            holds(c) and c.metadata.name not in {r.metadata.name for r in running}
            for c in await containers(client))

    await eventually(replaced, within=20, what="a waiting container placed")
    # Raise the cap: the waiting ones are looked at again at once.
    await client.apply(quota("lab", workspace="default", gpus=5))

    async def five() -> bool:
        return sum(holds(c) for c in await containers(client)) == 5

    await eventually(five, within=20, what="five GPUs in use under the raised cap")
    await anyio.sleep(0.5)
    watching.cancel()
    assert most <= 5
    assert sum(holds(c) for c in await containers(client)) == 5


async def test_product_cpu_and_user_caps(client: Client, group: TaskGroup) -> None:
    await SimNode(client, "mixed", gpus=[A100, A100, V100, V100], cpus=8).start(group)
    user = objects.new("User", "alice")
    user.user.spec.defaults.workspace = "default"
    await client.apply(user)
    await client.apply(quota("a100s", gpus=1, products=(A100,)))
    await client.apply(quota("alice", user="alice", millicores=3000))
    Controllers(client, controllers=("workload", "scheduler")).start(group)
    await client.apply(workload("big", gpus=1, products=(A100,), replicas=2))
    await client.apply(workload("cpu", cpu=2, replicas=2))

    async def settled() -> list[object_pb2.Object] | None:
        found = await containers(client)
        decided = [c for c in found if holds(c) or c.container.status.reason]
        return found if len(found) == 4 and len(decided) == 4 else None

    found = await eventually(settled, within=20, what="four containers placed or waiting")
    by_workload: dict[str, list[str]] = {}
    for c in found:
        by_workload.setdefault(c.container.spec.workload, []).append(
            "placed" if holds(c) else c.container.status.reason)
    assert sorted(by_workload["big"]) == ["QuotaExceeded", "placed"]
    # Alice's default workspace is capped at 3000m: one 2-CPU container fits.
    assert sorted(by_workload["cpu"]) == ["QuotaExceeded", "placed"]
    # A V100 is outside the A100 cap.
    await client.apply(workload("small", gpus=1, products=(V100,)))

    async def v100_placed() -> bool:
        return any(holds(c) for c in await containers(client, "small"))

    await eventually(v100_placed, within=20, what="the V100 container placed")
