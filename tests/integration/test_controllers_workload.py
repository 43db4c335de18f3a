"""The tutorial's workload flow, against real etcd, the apiserver and the controllers,
on simulated nodes (seed 000: 0 replicas, +1, +1, change the image, reload, trash,
stop, start, versions, delete)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from dora.api import conventions
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2, workloads_pb2
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


@pytest.fixture
async def cluster(client: Client, group: TaskGroup) -> list[SimNode]:
    nodes = [SimNode(client, "node-a"), SimNode(client, "node-b")]
    for node in nodes:
        await node.start(group)
    Controllers(client).start(group)
    return nodes


async def change(client: Client, name: str,
                 edit: Callable[[workloads_pb2.WorkloadSpec], None]) -> object_pb2.Object:
    current = await client.get("Workload", name)
    edit(current.workload.spec)
    current.workload.ClearField("status")
    current.metadata.resource_version = 0
    applied, _ = await client.apply(current)
    return applied


async def settled(client: Client, name: str, *, ready: int, version: int | None = None,
                  within: float = 10.0) -> object_pb2.Object:
    """The workload once its status reports ``ready`` running containers of the current
    version, for its latest generation, and exactly that many containers exist."""

    async def check() -> object_pb2.Object | None:
        wl = await client.get("Workload", name)
        status = wl.workload.status
        if status.observed_generation != wl.metadata.generation:
            return None
        if version is not None and status.current_version != version:
            return None
        if status.ready_replicas != ready or status.current_replicas != ready:
            return None
        live = await containers(client, name)
        if len(live) != ready or any(c.container.status.phase != "Running" for c in live):
            return None
        return wl

    result: object_pb2.Object = await eventually(check, within=within,
                                                 what=f"{name} with {ready} ready")
    return result


async def test_tutorial_flow(client: Client, cluster: list[SimNode], group: TaskGroup) -> None:
    # Keep the number of instances to zero for the moment.
    await client.apply(workload("blue.red", replicas=0))
    wl = await settled(client, "blue.red", ready=0, version=1)
    assert wl.workload.status.desired_replicas == 0
    assert await containers(client, "blue.red") == []
    available = {c.type: c for c in wl.workload.status.conditions}["Available"]
    assert (available.status, available.reason) == ("True", "ScaledToZero")

    # The plus button: one container, Running in seconds; again: 2/2.
    await change(client, "blue.red", lambda s: setattr(s.replica, "count", 1))
    await settled(client, "blue.red", ready=1, version=1)
    [first] = await containers(client, "blue.red")
    assert first.metadata.name == "blue.red.0"
    assert first.metadata.labels[conventions.WORKLOAD_LABEL] == "blue.red"
    assert first.metadata.owner_references[0].kind == "Workload"
    assert first.metadata.owner_references[0].controller
    assert first.container.spec.version == 1
    assert first.container.spec.template.image.image == "busybox"
    assert first.container.spec.node_name in ("node-a", "node-b")
    assert first.metadata.labels[conventions.NODE_LABEL] == first.container.spec.node_name
    assert conventions.AGENT_FINALIZER in first.metadata.finalizers
    assert first.container.spec.cpu_millicores == 1000

    await change(client, "blue.red", lambda s: setattr(s.replica, "count", 2))
    wl = await settled(client, "blue.red", ready=2, version=1)
    assert wl.workload.status.desired_replicas == 2
    assert [c.metadata.name for c in await containers(client, "blue.red")] == [
        "blue.red.0", "blue.red.1"]

    # Change the image: the containers are replaced one at a time.
    most = 0
    seen_live: set[str] = set()
    listed = anyio.Event()

    async def count_live() -> None:
        nonlocal most
        _, version = await client.list("Container")
        live = {c.metadata.name for c in await containers(client, "blue.red")}
        seen_live.update(live)
        listed.set()  # from here on the watch sees every change
        async for event in client.watch("Container", resource_version=version):
            name = event.object.metadata.name
            if event.type == WatchEvent.DELETED or event.object.metadata.HasField(
                    "deletion_timestamp"):
                live.discard(name)
            else:
                live.add(name)
            most = max(most, len(live))

    watcher = anyio.CancelScope()

    async def watch_counts() -> None:
        with watcher:
            await count_live()

    group.start_soon(watch_counts)
    await listed.wait()
    await change(client, "blue.red", lambda s: setattr(s.image, "image", "python"))
    wl = await settled(client, "blue.red", ready=2, version=2)
    watcher.cancel()
    assert most <= 3, "never more than one container above the replica count"
    live = await containers(client, "blue.red")
    assert {c.container.spec.template.image.image for c in live} == {"python"}
    assert {c.container.spec.version for c in live} == {2}
    versions, _ = await client.list("Workloadversion")
    assert sorted(v.metadata.name for v in versions) == ["blue.red.v1", "blue.red.v2"]
    progressing = {c.type: c for c in wl.workload.status.conditions}["Progressing"]
    assert progressing.reason == "Complete"

    # The reload button: deleting a container brings a fresh one.
    victim = live[0]
    await client.delete("Container", victim.metadata.name)
    await eventually(lambda: _replaced(client, victim), what="a fresh container")
    await settled(client, "blue.red", ready=2, version=2)

    # The trash button: this container goes and the replica count goes down.
    live = await containers(client, "blue.red")
    trashed = live[-1].metadata.name
    current = await client.get("Workload", "blue.red")
    await client.apply(conventions.scale_down(current, trashed))
    wl = await settled(client, "blue.red", ready=1, version=2)
    assert wl.workload.spec.replica.count == 1
    assert trashed not in {c.metadata.name for c in await containers(client, "blue.red")}

    # Stop keeps the definition and runs nothing; start brings the containers back.
    await change(client, "blue.red", lambda s: setattr(s.replica, "count", 2))
    await settled(client, "blue.red", ready=2, version=2)
    await change(client, "blue.red", lambda s: setattr(s, "stopped", True))
    wl = await settled(client, "blue.red", ready=0, version=2)
    assert wl.workload.status.desired_replicas == 0
    assert {c.type: c for c in wl.workload.status.conditions}["Available"].reason == "Stopped"
    await change(client, "blue.red", lambda s: setattr(s, "stopped", False))
    await settled(client, "blue.red", ready=2, version=2)

    # Versions: go back to version 1 (the busybox image).
    current = await client.get("Workload", "blue.red")
    version_1 = await client.get("Workloadversion", "blue.red.v1")
    await client.apply(conventions.rollback(current, version_1))
    wl = await settled(client, "blue.red", ready=2, version=1)
    live = await containers(client, "blue.red")
    assert {c.container.spec.template.image.image for c in live} == {"busybox"}
    assert wl.workload.spec.replica.count == 2
    versions, _ = await client.list("Workloadversion")
    assert len(versions) == 2, "restoring a version does not add one"

    # Events were recorded for the important steps.
    events, _ = await client.list("Event", label_selector=f"{conventions.WORKLOAD_LABEL}=blue.red")
    reasons = {e.event.spec.reason for e in events}
    assert {"Created", "Deleted", "Scheduled", "NewVersion"} <= reasons

    # The red bin: everything the workload owns goes with it.
    await client.delete("Workload", "blue.red")

    async def all_gone() -> bool:
        return not any([
            await containers(client, "blue.red", live=False),
            (await client.list("Workloadversion"))[0],
            (await client.list("Event"))[0],
        ])

    await eventually(all_gone, what="containers, versions and events of blue.red gone")


async def _replaced(client: Client, victim: object_pb2.Object) -> bool:
    live = await containers(client, "blue.red")
    uids = {c.metadata.uid for c in live}
    return victim.metadata.uid not in uids and len(live) == 2


async def test_restart_policy(client: Client, cluster: list[SimNode]) -> None:
    await client.apply(workload("always", replicas=1, restart="Always"))
    await client.apply(workload("never", replicas=1, restart="Never"))
    await settled(client, "always", ready=1)
    await settled(client, "never", ready=1)
    [always] = await containers(client, "always")
    [never] = await containers(client, "never")
    await set_phase(client, always, "Exited", exit_code=1)
    await set_phase(client, never, "Exited", exit_code=1)

    async def restarted() -> bool:
        live = await containers(client, "always")
        return [c.metadata.uid for c in live] != [always.metadata.uid] and len(live) == 1
    await eventually(restarted, what="the Always container recreated")
    await settled(client, "always", ready=1)

    async def reported() -> object_pb2.Object | None:
        wl = await client.get("Workload", "never")
        conds = {c.type: c for c in wl.workload.status.conditions}
        return wl if "Exited" in conds else None
    wl = await eventually(reported, what="the Never container reported")
    assert "never.0" in {c.type: c for c in wl.workload.status.conditions}["Exited"].message
    [still] = await containers(client, "never")
    assert still.metadata.uid == never.metadata.uid
    assert still.container.status.phase == "Exited"


async def test_unschedulable_reason_and_retry(client: Client, group: TaskGroup) -> None:
    Controllers(client).start(group)
    await client.apply(workload("big", replicas=1, gpus=2,
                                products=["Quadro RTX 6000", "Tesla V100-SXM2-16GB"]))

    async def unschedulable() -> str:
        wl = await client.get("Workload", "big")
        conds = {c.type: c for c in wl.workload.status.conditions}
        return conds["Unschedulable"].message if "Unschedulable" in conds else ""
    message = await eventually(unschedulable, what="an Unschedulable condition")
    assert "no node has 2 free GPUs of [Quadro RTX 6000, Tesla V100-SXM2-16GB]" in message
    [pending] = await containers(client, "big")
    assert pending.container.status.phase == "Pending"

    node = SimNode(client, "gpu-1", gpus=["Tesla V100-SXM2-16GB"] * 2)
    await node.start(group)
    wl = await settled(client, "big", ready=1)
    assert "Unschedulable" not in {c.type for c in wl.workload.status.conditions}


async def test_containers_carry_the_workloads_labels_and_slots(
        client: Client, cluster: list[SimNode]) -> None:
    wl = workload("lab", replicas=2)
    wl.metadata.labels["app"] = "x"
    await client.apply(wl)
    await settled(client, "lab", ready=2)
    items, _ = await client.list("Container", zone="default", label_selector="app=x")
    assert sorted((c.metadata.name, c.container.spec.replica_index,
                   c.container.spec.replicas) for c in items) == [("lab.0", 0, 2),
                                                                  ("lab.1", 1, 2)]
    # A label changed (or added) on the workload reaches its containers; no new version.
    current = await client.get("Workload", "lab")
    current.metadata.labels.update({"app": "y", "team": "vision"})
    current.workload.ClearField("status")
    current.metadata.resource_version = 0
    await client.apply(current)

    async def relabelled() -> bool:
        found, _ = await client.list("Container", zone="default",
                                     label_selector="app=y,team=vision")
        return len(found) == 2
    await eventually(relabelled, within=10, what="the containers relabelled")
    assert (await client.get("Workload", "lab")).workload.status.current_version == 1
