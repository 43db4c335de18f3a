"""The scheduler's binds against the real apiserver: one write per bind, no GPU given
twice by many binds in flight at once, events aggregated per workload and still in
``doractl describe``, and the assume cache forgetting what did not happen."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import anyio
import pytest

from dora.api import conventions, errors, objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.api.v1.resources_pb2 import WatchEvent
from dora.apiserver.server import APIServer
from dora.controllers.events import Recorder
from dora.controllers.scheduler.reconciler import CONTROLLER as SCHEDULER
from dora.controllers.scheduler.reconciler import Scheduler
from dora.runtime.cache import clone
from dora.runtime.clock import RealClock
from tests.integration.controllers_harness import (
    Controllers,
    SimNode,
    TaskGroup,
    containers,
    eventually,
    group,
    workload,
)
from tests.integration.test_ctl_support import Ctl

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

V100 = "Tesla V100-SXM2-16GB"


def binding_of(c: object_pb2.Object) -> tuple[object, ...]:
    spec, labels = c.container.spec, c.metadata.labels
    return (spec.node_name, tuple(g.index for g in spec.gpus), spec.cpu_millicores,
            labels.get(conventions.NODE_LABEL), labels.get(conventions.PLACEMENT_LABEL),
            conventions.AGENT_FINALIZER in c.metadata.finalizers)


async def test_a_bind_is_one_write_and_events_are_aggregated(
        client: Client, group: TaskGroup, apiserver: APIServer, admin_token: str,
        tmp_path: Path) -> None:
    seen: dict[str, list[object_pb2.Object]] = collections.defaultdict(list)

    async def follow() -> None:
        async for event in client.watch("Container", zone="default"):
            if event.type != WatchEvent.BOOKMARK:
                seen[event.object.metadata.name].append(event.object)

    group.start_soon(follow)
    for index in range(3):
        await SimNode(client, f"gpu-{index}", gpus=[V100] * 4).start(group)
    Controllers(client).start(group)
    await client.apply(workload("sweep", replicas=18, gpus=1, products=[V100]))

    async def twelve_bound() -> list[object_pb2.Object] | None:
        live = await containers(client, "sweep")
        done = [c for c in live if conventions.NODE_LABEL in c.metadata.labels]
        return done if len(done) == 12 and len(live) == 18 else None
    done = await eventually(twelve_bound, within=30, what="12 of 18 bound")

    for container in done:
        versions = seen[container.metadata.name]
        bindings = [binding_of(v) for v in versions]
        # Every version before the bind is unbound; the bind writes node, GPU, CPU, both
        # labels and the finalizer at once.
        first = next(i for i, v in enumerate(versions)
                     if conventions.NODE_LABEL in v.metadata.labels)
        assert all(b == ("", (), 0, None, None, False) for b in bindings[:first]), bindings
        node, gpus, cpu, label, placement, finalizer = bindings[first]
        assert node.startswith("gpu-") and label == placement == node and finalizer
        assert len(gpus) == 1 and cpu == 0
    used = collections.Counter((c.container.spec.node_name, g.index)
                               for c in done for g in c.container.spec.gpus)
    assert len(used) == 12 and set(used.values()) == {1}

    # The first binds of the workload are an event each (about the container); the rest
    # one event about the workload whose count grows; the same for the six that wait.
    def about(events: list[object_pb2.Object], kind: str, reason: str) -> list[object_pb2.Object]:
        return [e for e in events if e.event.spec.involved_object.kind == kind
                and e.event.spec.reason == reason
                and e.event.spec.involved_object.name.startswith("sweep")]

    async def aggregated() -> list[object_pb2.Object] | None:
        events, _ = await client.list("Event")
        scheduled = about(events, "Workload", "Scheduled")
        waiting = about(events, "Workload", "Unschedulable")
        if len(scheduled) != 1 or scheduled[0].event.spec.count != 9 or len(waiting) != 1:
            return None
        return events
    events = await eventually(aggregated, within=30, what="aggregated events")
    assert len(about(events, "Container", "Scheduled")) == 3
    assert len(about(events, "Container", "Unschedulable")) == 3
    [waiting] = about(events, "Workload", "Unschedulable")
    assert waiting.event.spec.type == "Warning" and waiting.event.spec.count >= 3

    ctl = Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")
    described = await ctl.ok("describe", "wk", "sweep")
    lines = described.out.split("Events:\n")[1].splitlines()
    [scheduled] = [line for line in lines
                   if "Scheduled" in line.split()[:2] and "(x9 over" in line]
    assert "bound sweep." in scheduled, scheduled
    assert len([line for line in lines if "Scheduled" in line.split()[:2]]) == 4, lines
    waits = [line for line in lines if "Unschedulable" in line.split()[:2]]
    assert len(waits) == 4 and all(w.split()[0] == "Warning" for w in waits), waits
    assert all("no node has 1 free GPU" in w for w in waits), waits


async def test_many_binds_in_flight_never_give_a_gpu_twice(client: Client,
                                                           group: TaskGroup) -> None:
    """64 binds at once, two replicas racing for the lead: every GPU goes once."""
    for index in range(3):
        await SimNode(client, f"gpu-{index}", gpus=[V100] * 4).start(group)
    for identity in ("s1", "s2"):
        Controllers(client, identity=identity, scheduler_workers=64, seed=None).start(group)
    await client.apply(workload("many", replicas=40, gpus=1, products=[V100],
                                affinity="Random"))

    async def twelve() -> list[object_pb2.Object] | None:
        live = await containers(client, "many")
        done = [c for c in live if conventions.NODE_LABEL in c.metadata.labels]
        return live if len(done) == 12 and len(live) == 40 else None
    live = await eventually(twelve, within=30, what="12 of 40 bound")
    used = collections.Counter(
        (c.container.spec.node_name, g.index) for c in live for g in c.container.spec.gpus)
    assert len(used) == 12 and set(used.values()) == {1}, used


def _scheduler(client: Client) -> Scheduler:
    # Every store the scheduler's spec declares (the queue's Quota, User, Zone too).
    cache = SCHEDULER.new_cache()
    recorder = Recorder(client=client, clock=RealClock(), source="test")
    return Scheduler(client=client, cache=cache, zone="default", clock=RealClock(),
                     recorder=recorder, rng=random.Random(1))


async def _zone(client: Client, scheduler: Scheduler, group: TaskGroup,
                names: list[str]) -> list[object_pb2.Object]:
    """One node of one GPU in the scheduler's cache, and a pending container per name."""
    node = SimNode(client, "one-gpu", gpus=[V100])
    await node.start(group)
    for kind in ("Node", "Lease"):
        items, _ = await client.list(kind, zone="default")
        for item in items:
            scheduler.cache.store(kind).upsert(item)
    made = []
    for name in names:
        obj = objects.new("Container", name, zone="default", workspace="default")
        obj.container.spec.workload = name
        obj.container.spec.template.image.image = "busybox"
        obj.container.spec.template.selectors.gpu.count = 1
        obj.container.spec.template.selectors.gpu.product_name.append("All")
        created, _ = await client.apply(obj)
        scheduler.cache.store("Container").upsert(created)
        made.append(created)
    return made


async def test_the_assume_cache_forgets_a_failed_bind(client: Client, group: TaskGroup) -> None:
    scheduler = _scheduler(client)
    first, second = await _zone(client, scheduler, group, ["first", "second"])
    key = objects.ref_of(first)
    # The container changes behind the cache's back: the bind's precondition fails.
    changed = clone(first)
    changed.metadata.annotations["touched"] = "yes"
    await client.apply(changed)
    with pytest.raises(errors.Conflict):
        await scheduler.reconcile(key=key)
    assert key not in scheduler.assumed
    # So the only GPU is free for the next container at once.
    await scheduler.reconcile(key=objects.ref_of(second))
    bound = await client.get("Container", "second")
    assert bound.container.spec.node_name == "one-gpu"
    assert objects.ref_of(second) in scheduler.assumed  # until the cache shows it


async def test_the_assume_cache_forgets_a_deleted_container(client: Client,
                                                            group: TaskGroup) -> None:
    scheduler = _scheduler(client)
    first, second = await _zone(client, scheduler, group, ["first", "second"])
    await scheduler.reconcile(key=objects.ref_of(first))
    assert objects.ref_of(first) in scheduler.assumed
    # The cache has not seen the bind; meanwhile the container is deleted, and its agent
    # (the simulated node's) lets it go.
    await client.delete("Container", "first")

    async def gone() -> bool:
        try:
            await client.get("Container", "first")
        except errors.NotFound:
            return True
        return False
    await eventually(gone, what="first gone")
    scheduler.cache.store("Container").remove(first)
    await scheduler.reconcile(key=objects.ref_of(first))
    assert objects.ref_of(first) not in scheduler.assumed
    await scheduler.reconcile(key=objects.ref_of(second))
    assert (await client.get("Container", "second")).container.spec.node_name == "one-gpu"


async def test_a_bind_of_unknown_outcome_is_kept_until_the_apiserver_answers(
        client: Client, group: TaskGroup, apiserver: APIServer, admin_token: str) -> None:
    scheduler = _scheduler(client)
    [only] = await _zone(client, scheduler, group, ["only"])
    key = objects.ref_of(only)
    # No answer at all (nothing listens there): the write may or may not have happened.
    async with Client("127.0.0.1:1", token=admin_token, timeout=5) as nowhere:
        scheduler.client = nowhere
        with pytest.raises(errors.Unavailable), anyio.fail_after(30):
            await scheduler.reconcile(key=key)
    assert scheduler.assumptions[key].in_doubt
    # The GPU stays assumed: another container does not get it meanwhile.
    other = clone(only)
    other.metadata.name = "other"
    other.metadata.resource_version = 0
    other.metadata.uid = ""
    created, _ = await client.apply(other)
    scheduler.cache.store("Container").upsert(created)
    scheduler.client = client
    result = await scheduler.reconcile(key=Ref("Container", "default", "default", "other"))
    assert result.requeue_after > 0  # unschedulable
    # Asked again, the apiserver says the write never happened: forgotten, bound now.
    await scheduler.reconcile(key=key)
    bound = await client.get("Container", "only")
    assert bound.container.spec.node_name == "one-gpu"
