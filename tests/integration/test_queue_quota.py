"""Quotas on real etcd, the real apiserver and the real controllers with simulated
nodes: a cap of 2 GPUs holds while 200 one-GPU workloads are applied at once; the
others wait with reason QuotaExceeded and go, two at a time, as GPUs free."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from dora.api import errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
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
from tests.integration.test_ctl_support import Ctl, table

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

A100, V100 = "A100-SXM4-80GB", "Tesla V100-SXM2-16GB"


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")


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
    Controllers(client, controllers=("workload", "scheduler", "gc")).start(group)

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


async def test_product_cpu_and_user_caps(client: Client, group: TaskGroup, ctl: Ctl,
                                         tmp_path: Path) -> None:
    await SimNode(client, "mixed", gpus=[A100, A100, V100, V100], cpus=8).start(group)
    user = objects.new("User", "alice")
    user.user.spec.defaults.workspace = "default"
    await client.apply(user)
    await client.apply(quota("a100s", gpus=1, products=(A100,)))
    await client.apply(quota("alice", user="alice", millicores=3000))
    Controllers(client, controllers=("workload", "scheduler", "gc")).start(group)
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

    # doractl: the queue, best first, with why; the quotas.
    rows = table(await ctl.ok("get", "queue", "-o", "wide"))
    assert [r["#"] for r in rows] == ["1", "2"]
    assert sorted((r["WANTS"], r["WAITING"]) for r in rows) == [
        ("cpu 2xAll", "QuotaExceeded"), (f"gpu 1x{A100}", "QuotaExceeded")]
    assert {r["WHY"] for r in rows} == {
        f"quota a100s: 1 of 1 GPUs of [{A100}] in use, this container needs 1",
        "quota alice: 2000m of 3000m CPU in use, this container needs 2000m"}
    manifest = tmp_path / "quota.yaml"
    manifest.write_text(README_QUOTA)
    await ctl.ok("apply", "-f", str(manifest))
    quotas = {r["NAME"]: r for r in table(await ctl.ok("get", "quotas"))}
    assert (quotas["lab"]["SCOPE"], quotas["lab"]["GPU"], quotas["lab"]["CPU"]) == (
        "workspace lab", f"4, 2 [{V100}|Quadro RTX 6000]", "32000m")
    assert (quotas["alice"]["SCOPE"], quotas["alice"]["GPU"]) == ("user alice", "-")


README_QUOTA = f"""\
apiVersion: v1
kind: Quota
metadata:
  name: lab
  zone: default
spec:
  workspace: lab
  gpu:
    - product_name: All
      count: 4
    - product_name: [{V100}, Quadro RTX 6000]
      count: 2
  cpu:
    millicores: 32000
  containers: 50
"""


async def test_fair_share_the_user_without_history_goes_first(
        client: Client, group: TaskGroup) -> None:
    """Issue 22: one user with a GPU history and one without both queue 8 one-GPU
    containers on a full 4-GPU zone; when the GPUs free, the second user's run first."""
    for name in ("heavy", "light"):
        await client.apply(objects.new("Workspace", name))
        await client.apply(objects.new("User", name))
    await SimNode(client, "four", gpus=[A100] * 4).start(group)
    Controllers(client, controllers=("workload", "scheduler", "gc")).start(group)
    await client.apply(workload("history", gpus=1, replicas=4, workspace="heavy"))

    async def full() -> bool:
        return sum(holds(c) for c in await containers(client, "history")) == 4

    await eventually(full, within=20, what="heavy's history on all 4 GPUs")
    await anyio.sleep(3)  # history: 3 s of the whole zone
    await client.apply(workload("h", gpus=1, replicas=8, workspace="heavy"))
    await client.apply(workload("l", gpus=1, replicas=8, workspace="light"))

    async def queued() -> bool:
        found = await containers(client, "h") + await containers(client, "l")
        return len(found) == 16 and all(c.container.status.phase == "Pending"
                                        for c in found)

    await eventually(queued, within=20, what="16 containers waiting")
    await client.delete("Workload", "history", zone="default", workspace="heavy")

    async def placed() -> list[object_pb2.Object] | None:
        found = [c for c in await containers(client) if holds(c)
                 and c.container.spec.workload in ("h", "l")]
        return found if len(found) == 4 else None

    running = await eventually(placed, within=20, what="4 of the 16 placed")
    await anyio.sleep(1)
    running = [c for c in await containers(client) if holds(c)]
    assert sorted(c.metadata.workspace for c in running) == ["light"] * 4
    # Heavy's containers that found a free GPU yielded it, and said so.
    events, _ = await client.list("Event", zone="default", workspace="heavy")
    queued = [e.event.spec.message for e in events if e.event.spec.reason == "Queued"]
    assert queued and set(queued) == {
        "queued: workspace light's containers of the same shape go first "
        "(less recent use (fair share))"}


async def test_priority_goes_before_fair_share_and_needs_the_verb(
        client: Client, group: TaskGroup) -> None:
    await SimNode(client, "two", gpus=[A100] * 2).start(group)
    Controllers(client, controllers=("workload", "scheduler", "gc")).start(group)
    await client.apply(workload("blocker", gpus=1, replicas=2))

    async def full() -> bool:
        return sum(holds(c) for c in await containers(client, "blocker")) == 2

    await eventually(full, within=20, what="both GPUs taken")
    low = workload("a-low", gpus=1, replicas=3)
    low.workload.spec.priority = -5
    high = workload("z-high", gpus=1, replicas=3)
    high.workload.spec.priority = 50
    # Named so that without the queue the low ones would come first (keys sort by name).
    await client.apply(low)
    await client.apply(high)

    async def waiting() -> bool:
        found = await containers(client, "a-low") + await containers(client, "z-high")
        return len(found) == 6 and all(c.container.status.phase == "Pending" for c in found)

    await eventually(waiting, within=20, what="6 containers waiting")
    await client.delete("Workload", "blocker", zone="default", workspace="default")

    async def placed() -> list[object_pb2.Object] | None:
        found = [c for c in await containers(client) if holds(c)]
        return found if len(found) == 2 else None

    await eventually(placed, within=20, what="2 placed")
    await anyio.sleep(1)
    assert sorted(c.container.spec.workload for c in await containers(client)
                  if holds(c)) == ["z-high", "z-high"]
    bad = workload("bad", gpus=1)
    bad.workload.spec.priority = 101
    with pytest.raises(errors.Invalid, match=r"spec\.priority"):
        await client.apply(bad)


def pending_container(name: str) -> object_pb2.Object:
    obj = objects.new("Container", name, zone="default", workspace="default")
    obj.container.spec.workload = name.partition(".")[0]
    obj.container.spec.template.image.image = "busybox"
    return obj


async def test_a_container_cap_bounds_what_exists_under_200_concurrent_applies(
        client: Client, group: TaskGroup) -> None:
    """No nodes: every container waits, so only the cap on containers that exist
    (running or waiting) stops them. 200 Containers applied at once: 3 are created;
    then the workload controller's creates are refused the same way."""
    await client.apply(quota("backlog", workspace="default", count=3))
    refused = 0

    async def create(i: int) -> None:
        nonlocal refused
        try:
            await client.apply(pending_container(f"c{i}.0"))
        except errors.Exhausted as exc:
            assert "quota backlog: 3 of 3 containers exist" in str(exc)
            refused += 1

    async with anyio.create_task_group() as applies:
        for i in range(200):
            applies.start_soon(create, i)
    assert (len(await containers(client)), refused) == (3, 197)

    # A finished one makes room for one more; the workload controller is held too.
    [first, *_] = await containers(client)
    await set_phase(client, first, "Exited")
    Controllers(client, controllers=("workload",)).start(group)
    await client.apply(workload("many", replicas=5))

    async def refused_event() -> bool:
        events, _ = await client.list("Event", zone="default")
        return any(e.event.spec.reason == "QuotaExceeded"
                   and "quota backlog: 3 of 3 containers exist" in e.event.spec.message
                   for e in events)

    await eventually(refused_event, within=30, what="a QuotaExceeded event")
    assert len(await containers(client, "many")) == 1


@pytest.mark.parametrize("preemption", [True, False])
async def test_preemption_stops_lower_priority_of_another_user_only_when_the_zone_says(
        client: Client, group: TaskGroup, preemption: bool) -> None:
    zone = objects.new("Zone", "default")
    zone.zone.spec.preemption = preemption
    await client.apply(zone)
    for name in ("alice", "bob"):
        await client.apply(objects.new("Workspace", name))
        await client.apply(objects.new("User", name))
    await SimNode(client, "two", gpus=[A100] * 2).start(group)
    Controllers(client, controllers=("workload", "scheduler", "gc")).start(group)
    low = workload("low", gpus=1, replicas=2, workspace="alice")
    low.workload.spec.priority = -10
    await client.apply(low)

    async def full() -> bool:
        return sum(holds(c) for c in await containers(client, "low")) == 2

    await eventually(full, within=20, what="alice's low-priority containers on both GPUs")
    await anyio.sleep(2.5)  # the queue sees alice's use: bob goes before her at one priority
    # Alice's own higher priority never stops her own containers.
    mine = workload("mine", gpus=1, workspace="alice")
    mine.workload.spec.priority = 20
    await client.apply(mine)
    urgent = workload("urgent", gpus=1, workspace="bob")
    urgent.workload.spec.priority = 20
    await client.apply(urgent)

    async def urgent_placed() -> bool:
        return any(holds(c) for c in await containers(client, "urgent"))

    if not preemption:
        await anyio.sleep(2)
        assert not await urgent_placed()
        assert sum(holds(c) for c in await containers(client, "low")) == 2
        return
    await eventually(urgent_placed, within=20, what="bob's urgent container placed")
    events, _ = await client.list("Event", zone="default", workspace="alice")
    preempted = [e for e in events if e.event.spec.reason == "Preempted"]
    assert len(preempted) == 1
    assert "(priority 20 over -10)" in preempted[0].event.spec.message
    assert preempted[0].event.spec.involved_object.name.startswith("low")
    # Alice's replacement waits; her "mine" never preempted her own.
    await anyio.sleep(1)
    lows = await containers(client, "low")
    assert (sum(holds(c) for c in lows), len(lows)) == (1, 2)
    assert not any(holds(c) for c in await containers(client, "mine"))
