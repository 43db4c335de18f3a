"""The workload controller on the fake client: scale, status, and the credit hold."""

from __future__ import annotations

import datetime as dt

from dora.api import conventions, errors, kinds, objects
from dora.api.v1 import meta_pb2, object_pb2
from dora.controllers.workload import reconciler
from dora.runtime.testing import Harness


def _workload(name: str = "train", replicas: int = 2) -> object_pb2.Object:
    obj = objects.new(kinds.WORKLOAD, name, zone="z", workspace="w")
    obj.workload.spec.replica.count = replicas
    obj.workload.spec.image.image = "busybox"
    return obj


def _credit(*, exhausted: bool) -> object_pb2.Object:
    obj = objects.new(kinds.USERCREDIT, "w", zone="z")
    status = obj.usercredit.status
    status.exhausted, status.weekly = exhausted, 10
    status.workspaces.append("w")
    status.week_end.FromDatetime(dt.datetime(2024, 1, 8, tzinfo=dt.UTC))
    return obj


def _stored(harness: Harness[reconciler.WorkloadController],
            name: str = "train") -> object_pb2.Object:
    return harness.client.stored(kinds.WORKLOAD, name, zone="z", workspace="w")


def _condition(obj: object_pb2.Object, type: str) -> meta_pb2.Condition | None:
    return next((c for c in obj.workload.status.conditions if c.type == type), None)


async def test_creates_its_containers_and_a_version_then_scales_down() -> None:
    harness = Harness(reconciler.CONTROLLER)
    client = harness.client
    await client.apply(_workload(replicas=3))
    await harness.settle()
    assert client.names(kinds.CONTAINER) == ["train.0", "train.1", "train.2"]
    assert client.names(kinds.WORKLOADVERSION) == [conventions.version_name("train", 1)]
    container = client.stored(kinds.CONTAINER, "train.1", zone="z", workspace="w")
    owner = container.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == (kinds.WORKLOAD, "train", True)
    assert sorted(client.stored(kinds.CONTAINER, f"train.{i}", zone="z", workspace="w")
                  .container.spec.replica_index for i in range(3)) == [0, 1, 2]
    status = _stored(harness).workload.status
    assert (status.desired_replicas, status.current_replicas) == (3, 3)
    available = _condition(_stored(harness), "Available")
    assert available is not None and available.reason == "ReplicasNotReady"

    wl = _stored(harness)
    wl.workload.spec.replica.count = 1
    wl.workload.ClearField("status")
    await client.apply(wl)
    await harness.settle()
    assert len(client.names(kinds.CONTAINER)) == 1
    assert _stored(harness).workload.status.desired_replicas == 1


async def test_the_status_write_keeps_what_another_writer_set_meanwhile() -> None:
    harness = Harness(reconciler.CONTROLLER)
    client = harness.client
    await client.apply(_workload(replicas=1))
    await harness.settle()
    # Someone else's condition lands, and the cache has not seen it yet: the write
    # made from the cache conflicts, and is made again on a fresh read, keeping it.
    wl = _stored(harness)
    wl.workload.status.conditions.add(type="Audited", status="True")
    client.put(wl, unseen=True)
    container = client.stored(kinds.CONTAINER, "train.0", zone="z", workspace="w")
    container.container.status.phase = "Running"
    client.put(container)
    await harness.settle()
    wl = _stored(harness)
    assert _condition(wl, "Audited") is not None
    assert wl.workload.status.ready_replicas == 1
    assert harness.cache.store(kinds.WORKLOAD).get(objects.ref_of(wl)) is not None


async def test_a_status_write_that_keeps_conflicting_is_retried_by_the_queue() -> None:
    harness = Harness(reconciler.CONTROLLER)
    client = harness.client
    client.fail("update_status", errors.Conflict("moved on"), times=5)
    await client.apply(_workload(replicas=1))
    ran = await harness.settle()
    assert ran >= 2  # the first reconcile gave up after 5 conflicts; the next wrote
    assert _stored(harness).workload.status.desired_replicas == 1


async def test_runs_nothing_while_its_payer_has_no_credit_then_runs_again() -> None:
    harness = Harness(reconciler.CONTROLLER)
    client = harness.client
    client.put(_credit(exhausted=True))
    await client.apply(_workload())
    await harness.settle()
    assert client.names(kinds.CONTAINER) == []
    wl = _stored(harness)
    held = _condition(wl, conventions.CREDITS_EXHAUSTED_CONDITION)
    assert held is not None and held.reason == "CreditsExhausted"
    assert held.message == ("w has spent the weekly budget of 10 credits in zone z; "
                            "the week restarts Mon 2024-01-08 00:00 UTC")
    assert not wl.workload.spec.stopped  # the user's field is left alone
    assert wl.workload.status.desired_replicas == 0
    assert harness.recorder.reasons().count("CreditsExhausted") == 1

    client.put(_credit(exhausted=False))
    await harness.settle()
    assert client.names(kinds.CONTAINER) == ["train.0", "train.1"]
    assert _condition(_stored(harness), conventions.CREDITS_EXHAUSTED_CONDITION) is None
    assert "CreditsAvailable" in harness.recorder.reasons()


async def test_containers_of_a_running_workload_go_when_its_credit_is_spent() -> None:
    harness = Harness(reconciler.CONTROLLER)
    client = harness.client
    await client.apply(_workload())
    await harness.settle()
    assert len(client.names(kinds.CONTAINER)) == 2
    client.put(_credit(exhausted=True))
    await harness.settle()
    assert client.names(kinds.CONTAINER) == []
