"""Recovering from what a dead process left behind: a half-done bind, orphaned
containers, a node whose agent died before the controllers started."""

from __future__ import annotations

import pytest

from dora.api import conventions, errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from tests.integration.controllers_harness import (
    TTL,
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


async def container_of(client: Client, wl: object_pb2.Object, name: str) -> object_pb2.Object:
    """A container as the workload controller would make it."""
    from dora.controllers.workload import versions
    from dora.controllers.workload.reconciler import new_container

    version = versions.new_version(wl, 1, versions.template_of(wl.workload.spec))
    created, _ = await client.apply(new_container(wl, version, int(name.rsplit(".", 1)[1])),
                                    create_only=True)
    return created


async def test_a_reservation_left_by_a_dead_scheduler_is_finished(client: Client,
                                                                  group: TaskGroup) -> None:
    node = SimNode(client, "gpu-1", gpus=["V100"] * 2)
    await node.start(group)
    wl, _ = await client.apply(workload("job", replicas=1, gpus=2))
    container = await container_of(client, wl, "job.0")
    half = object_pb2.Object()
    half.CopyFrom(container)
    half.container.spec.node_name = "gpu-1"
    half.container.spec.gpus.add(index=0, uuid="x", product_name="V100")
    half.container.spec.gpus.add(index=1, uuid="y", product_name="V100")
    half.metadata.labels[conventions.PLACEMENT_LABEL] = "gpu-1"
    await client.apply(half)  # reserved, never committed: then the scheduler died

    Controllers(client).start(group)

    async def committed() -> object_pb2.Object | None:
        c = await client.get("Container", "job.0")
        return c if conventions.NODE_LABEL in c.metadata.labels else None
    done = await eventually(committed, what="the reservation committed")
    assert [g.index for g in done.container.spec.gpus] == [0, 1]
    assert conventions.AGENT_FINALIZER in done.metadata.finalizers
    assert [c.metadata.name for c in await containers(client, "job")] == ["job.0"]


async def test_containers_whose_workload_is_gone_are_deleted(client: Client,
                                                            group: TaskGroup) -> None:
    wl, _ = await client.apply(workload("ghost", replicas=1))
    await client.delete("Workload", "ghost")
    # What a reconcile that read the workload just before its deletion would create.
    await container_of(client, wl, "ghost.0")
    Controllers(client).start(group)

    async def gone() -> bool:
        try:
            await client.get("Container", "ghost.0")
        except errors.NotFound:
            return True
        return False
    await eventually(gone, what="the orphaned container deleted")


async def test_a_node_dead_before_the_controllers_started_loses_its_containers(
        client: Client, group: TaskGroup) -> None:
    dead = SimNode(client, "dead")
    await dead.declare()  # it reported once, and holds no lease any more
    wl, _ = await client.apply(workload("svc", replicas=1))
    container = await container_of(client, wl, "svc.0")
    bound = object_pb2.Object()
    bound.CopyFrom(container)
    bound.container.spec.node_name = "dead"
    bound.metadata.labels[conventions.NODE_LABEL] = "dead"
    bound.metadata.finalizers.append(conventions.AGENT_FINALIZER)
    await client.apply(bound)
    alive = SimNode(client, "alive")
    await alive.start(group)
    Controllers(client).start(group)

    async def moved() -> object_pb2.Object | None:
        live = await containers(client, "svc")
        ok = len(live) == 1 and live[0].container.spec.node_name == "alive" and (
            live[0].container.status.phase == "Running")
        return live[0] if ok else None
    replacement = await eventually(moved, within=TTL + 5, what="svc running on alive")
    assert replacement.metadata.uid != container.metadata.uid
    node = await client.get("Node", "dead")
    assert node.node.status.phase == "NotReady"
    assert objects.ref_of(node).name == "dead"
