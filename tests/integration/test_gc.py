"""Cascading deletes on real etcd: the apiserver deletes the one object asked for,
and the garbage collector (``dora.controllers.gc``) deletes what named it in its
ownerReferences, after it (also down a chain, and what was created after the
owner went), but never what still has a live owner."""

from __future__ import annotations

import pytest

from dora.api import errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.controllers.workload import versions
from tests.integration.controllers_harness import (
    Controllers,
    TaskGroup,
    eventually,
    group,
    workload,
)

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]


async def owned(client: Client, name: str, *owners: object_pb2.Object) -> object_pb2.Object:
    """A Container named ``name`` owned by ``owners`` (the first its controller)."""
    container = objects.new("Container", name)
    first = owners[0]
    container.container.spec.workload = first.metadata.name
    container.container.spec.template.CopyFrom(
        versions.template_of(workload("template").workload.spec))
    for index, owner in enumerate(owners):
        container.metadata.owner_references.add(kind=owner.kind, name=owner.metadata.name,
                                                uid=owner.metadata.uid, controller=index == 0)
    created, _ = await client.apply(container, create_only=True)
    return created


async def names(client: Client, kind: str = "Container") -> list[str]:
    items, _ = await client.list(kind)
    return [item.metadata.name for item in items]


def start_gc(client: Client, group: TaskGroup) -> None:
    Controllers(client, elect=False, controllers=("gc",)).start(group)


async def test_deleting_an_owner_deletes_what_it_owns_after_it(
        client: Client, group: TaskGroup) -> None:
    owner, _ = await client.apply(workload("web"))
    other, _ = await client.apply(workload("db"))
    first = await owned(client, "web.0", owner)
    await owned(client, "web.1", owner)
    await owned(client, "db.0", other)
    await owned(client, "web.0.sidecar", first)  # owned by an owned object: a chain
    version, _ = await client.apply(versions.new_version(
        owner, 1, versions.template_of(owner.workload.spec)))
    assert version.metadata.owner_references[0].uid == owner.metadata.uid

    await client.delete("Workload", "web")
    # The request deleted the workload alone: nothing else was read or deleted.
    assert await names(client) == ["db.0", "web.0", "web.0.sidecar", "web.1"]
    assert await names(client, "Workloadversion") == [version.metadata.name]

    start_gc(client, group)

    async def collected() -> bool:
        return (await names(client) == ["db.0"]
                and not await names(client, "Workloadversion"))

    await eventually(collected, what="web's containers, its version and the chain gone")
    assert await names(client, "Workload") == ["db"]


async def test_an_owner_held_by_a_finalizer_loses_what_it_owns_at_once(
        client: Client, group: TaskGroup) -> None:
    held = workload("held")
    held.metadata.finalizers.append("example.com/hold")
    owner, _ = await client.apply(held)
    await owned(client, "held.0", owner)
    start_gc(client, group)
    marked = await client.delete("Workload", "held")
    assert marked.metadata.HasField("deletion_timestamp")

    async def collected() -> bool:
        return not await names(client)

    await eventually(collected, what="held's container gone while held is being deleted")
    still = await client.get("Workload", "held")
    del still.metadata.finalizers[:]
    await client.apply(still)
    with pytest.raises(errors.NotFound):
        await client.get("Workload", "held")


async def test_what_has_a_live_owner_stays_and_late_orphans_go(
        client: Client, group: TaskGroup) -> None:
    start_gc(client, group)
    alive, _ = await client.apply(workload("alive"))
    doomed, _ = await client.apply(workload("doomed"))
    await owned(client, "shared", doomed, alive)  # one owner left: it stays
    await owned(client, "doomed.0", doomed)
    await client.delete("Workload", "doomed")

    async def doomed_gone() -> bool:
        return await names(client) == ["shared"]

    await eventually(doomed_gone, what="doomed.0 gone, shared kept")

    # A create that raced the owner's deletion names an owner that is gone; so does
    # one naming the previous incarnation of a workload made again under its name.
    await owned(client, "late", doomed)
    again, _ = await client.apply(workload("doomed"))
    assert again.metadata.uid != doomed.metadata.uid
    await owned(client, "doomed.1", doomed)
    await owned(client, "doomed.2", again)

    async def orphans_gone() -> bool:
        return await names(client) == ["doomed.2", "shared"]

    await eventually(orphans_gone, what="the late orphans gone, the new incarnation's kept")
