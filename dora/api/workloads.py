"""The tutorial's workload verbs as client recipes: scale, stop/start, trash, versions, rollback.

``doractl`` and ``dora-web`` both offer them, and neither may import the other, so
the steps live here. Each change is a read-modify-write of the workload: get it,
change it, and apply it back carrying the ``resourceVersion`` it was read at, so
a concurrent change is never overwritten; on a conflict the whole step runs again
on a fresh read (``retry_on_conflict``).

Versions are the ``Workloadversion`` objects the workload controller keeps of
every spec (``<workload>.v<n>``, owned by the workload).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dora.api import conventions, errors
from dora.api.client import ApplyResult, Client
from dora.api.v1 import object_pb2, workloads_pb2

T = TypeVar("T")
Mutation = Callable[[workloads_pb2.WorkloadSpec], None]

CONFLICT_RETRIES = 10


async def retry_on_conflict(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` (read, change, apply at the version read) again while the
    object moved on under it, pausing a little longer each time; after
    ``CONFLICT_RETRIES`` give up naming ``what``."""
    for tries in range(CONFLICT_RETRIES):
        try:
            return await attempt()
        except errors.Conflict:
            await asyncio.sleep(0.05 * (tries + 1))
    raise errors.Conflict(f"{what} kept changing; try again")


async def update_spec(client: Client, name: str, mutate: Mutation, *, zone: str = "",
                      workspace: str = "") -> tuple[object_pb2.Object, ApplyResult.ValueType]:
    """Get workload ``name``, ``mutate`` its spec, apply it back at the version read."""

    async def attempt() -> tuple[object_pb2.Object, ApplyResult.ValueType]:
        obj = await client.get("Workload", name, zone=zone, workspace=workspace)
        mutate(obj.workload.spec)
        obj.workload.ClearField("status")
        return await client.apply(obj)

    return await retry_on_conflict(f"workload/{name}", attempt)


def scale_to(replicas: int) -> Mutation:
    if replicas < 0:
        raise errors.Invalid("must be 0 or more", field="replicas")

    def mutate(spec: workloads_pb2.WorkloadSpec) -> None:
        spec.replica.count = replicas

    return mutate


def set_stopped(stopped: bool) -> Mutation:
    def mutate(spec: workloads_pb2.WorkloadSpec) -> None:
        spec.stopped = stopped

    return mutate


async def scale_down_container(client: Client, name: str, *, zone: str = "",
                               workspace: str = "") -> object_pb2.Object:
    """Remove Container ``name`` through its Workload, one replica fewer
    (``conventions.scale_down``); the Container as it was."""

    async def attempt() -> object_pb2.Object:
        container = await client.get("Container", name, zone=zone, workspace=workspace)
        owner = container.container.spec.workload
        if not owner:
            raise errors.Invalid(f"container/{name} belongs to no workload: "
                                 "delete it without scaling down")
        workload = await client.get("Workload", owner, zone=container.metadata.zone,
                                    workspace=container.metadata.workspace)
        await client.apply(conventions.scale_down(workload, name))
        return container

    return await retry_on_conflict(f"the workload of container/{name}", attempt)


async def versions_of(client: Client, workload: object_pb2.Object) -> list[object_pb2.Object]:
    """The workload's versions, oldest first."""
    meta = workload.metadata
    items, _ = await client.list("Workloadversion", zone=meta.zone, workspace=meta.workspace)
    owned = [v for v in items
             if any(o.uid == meta.uid for o in v.metadata.owner_references)]
    return sorted(owned, key=lambda v: v.workloadversion.spec.version)


async def target_version(client: Client, workload: object_pb2.Object,
                         number: int | None) -> object_pb2.Object:
    """Version ``number`` of ``workload``; with None, the one before the current."""
    name = workload.metadata.name
    found = await versions_of(client, workload)
    if number is None:
        current = workload.workload.status.current_version
        earlier = [v for v in found if v.workloadversion.spec.version < current]
        if not current or not earlier:
            raise errors.NotFound(
                f"workload/{name} has no version before the current one"
                + (f" ({current})" if current else "")
                + f"; see `doractl versions workload {name}`"
            )
        return earlier[-1]
    for version in found:
        if version.workloadversion.spec.version == number:
            return version
    known = ", ".join(str(v.workloadversion.spec.version) for v in found) or "none"
    raise errors.NotFound(f"workload/{name} has no version {number} (versions: {known})")


async def rollback(client: Client, name: str, number: int | None, *, zone: str = "",
                   workspace: str = "") -> tuple[int, ApplyResult.ValueType]:
    """Go back to version ``number`` (None: the one before the current); the version
    number and the apply's result. Replica count and stopped stay as they are."""

    async def attempt() -> tuple[int, ApplyResult.ValueType]:
        workload = await client.get("Workload", name, zone=zone, workspace=workspace)
        target = await target_version(client, workload, number)
        _, result = await client.apply(conventions.rollback(workload, target))
        return target.workloadversion.spec.version, result

    return await retry_on_conflict(f"workload/{name}", attempt)
