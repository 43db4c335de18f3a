"""A runaway spec cannot run away: the workload controller creates containers in
bounded batches and reads the spec between them, so scale-to-0 or a delete stops
it within one batch and other workloads converge meanwhile; a workload keeps a
bounded version history. Real etcd, apiserver and controllers."""

from __future__ import annotations

import anyio
import pytest

from dora.api import conventions
from dora.api.client import Client, WatchEvent
from tests.integration.controllers_harness import (
    Controllers,
    TaskGroup,
    containers,
    eventually,
    group,
    workload,
)
from tests.integration.test_controllers_workload import change

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

BATCH = 10


class Creations:
    """The resourceVersion each Container of a workload was created at, as a watch
    sees them."""

    def __init__(self, client: Client, workload: str) -> None:
        self.client = client
        self.workload = workload
        self.revisions: list[int] = []
        self.scope = anyio.CancelScope()

    async def start(self, group: TaskGroup) -> None:
        _, version = await self.client.list("Container")

        async def run() -> None:
            with self.scope:
                async for event in self.client.watch(
                        "Container", resource_version=version,
                        label_selector=f"{conventions.WORKLOAD_LABEL}={self.workload}"):
                    if event.type == WatchEvent.ADDED:
                        self.revisions.append(event.object.metadata.resource_version)

        group.start_soon(run)

    async def at_least(self, count: int) -> bool:
        return len(self.revisions) >= count

    def after(self, revision: int) -> int:
        return sum(1 for r in self.revisions if r > revision)


@pytest.mark.parametrize("how", ["scale to 0", "delete"])
async def test_a_runaway_stops_within_one_batch(client: Client, group: TaskGroup,
                                                how: str) -> None:
    Controllers(client, create_batch=BATCH).start(group)
    created = Creations(client, "bomb")
    await created.start(group)
    await client.apply(workload("bomb", replicas=1000))
    await eventually(lambda: created.at_least(2 * BATCH), what="two batches")
    if how == "delete":
        removed = await client.delete("Workload", "bomb")
        stop = removed.metadata.resource_version
    else:
        stop = (await change(client, "bomb",
                             lambda s: setattr(s.replica, "count", 0))).metadata.resource_version

    async def none_left() -> bool:
        return not await containers(client, "bomb", live=False)

    await eventually(none_left, within=30, what="every container of bomb gone")
    await anyio.sleep(0.5)  # a reconcile still running would create more now
    assert created.after(stop) <= BATCH, (
        f"{created.after(stop)} containers created after the {how}")
    assert len(created.revisions) < 1000
    assert not await containers(client, "bomb", live=False)
    created.scope.cancel()


async def test_other_workloads_converge_while_a_big_one_scales_up(
        client: Client, group: TaskGroup) -> None:
    Controllers(client, create_batch=BATCH, workers=1).start(group)
    created = Creations(client, "big")
    await created.start(group)
    await client.apply(workload("big", replicas=1000))
    await eventually(lambda: created.at_least(BATCH), what="a first batch")
    await client.apply(workload("small", replicas=3))

    async def small_made() -> bool:
        return len(await containers(client, "small")) == 3

    await eventually(small_made, within=10, what="small's 3 containers")
    # With one worker, small's reconcile came between two of big's batches.
    assert len(created.revisions) < 1000
    await change(client, "big", lambda s: setattr(s.replica, "count", 0))
    created.scope.cancel()


async def test_a_workload_keeps_a_bounded_version_history(client: Client,
                                                          group: TaskGroup) -> None:
    Controllers(client, version_history=3).start(group)
    await client.apply(workload("hist", replicas=0))

    async def numbers() -> list[int]:
        items, _ = await client.list(
            "Workloadversion", label_selector=f"{conventions.WORKLOAD_LABEL}=hist")
        return sorted(v.workloadversion.spec.version for v in items)

    async def versions_are(wanted: list[int]) -> bool:
        return await numbers() == wanted

    await eventually(lambda: versions_are([1]), what="version 1")
    for edit in range(2, 7):
        await change(client, "hist", lambda s, n=edit: setattr(s.config, "cmd", f"sleep {n}"))
        kept = list(range(max(1, edit - 2), edit + 1))
        await eventually(lambda k=kept: versions_are(k), what=f"versions {kept}")
    # Rolling back to a kept version makes it current again and prunes nothing.
    await change(client, "hist", lambda s: setattr(s.config, "cmd", "sleep 5"))

    async def current_is_5() -> bool:
        status = (await client.get("Workload", "hist")).workload.status
        return status.current_version == 5

    await eventually(current_is_5, what="version 5 current")
    assert await numbers() == [4, 5, 6]
