"""The volume controller on the fake client: readiness, users, protection."""

from __future__ import annotations

from dora.api import errors, kinds, objects, volumes
from dora.api.v1 import meta_pb2, object_pb2
from dora.controllers import volume
from dora.runtime.testing import Harness


def _volume(name: str = "home", storage: str = "nfs-1") -> object_pb2.Object:
    obj = objects.new(kinds.VOLUME, name, zone="z", workspace="w")
    obj.volume.spec.storage = storage
    return obj


def _storage(name: str = "nfs-1") -> object_pb2.Object:
    obj = objects.new(kinds.STORAGE, name, zone="z")
    obj.storage.spec.kind, obj.storage.spec.mountpath = "NFS", "/exports"
    return obj


def _user(name: str, volume_name: str = "home") -> object_pb2.Object:
    obj = objects.new(kinds.CONTAINER, name, zone="z", workspace="w")
    obj.container.spec.workload = "job"
    obj.container.spec.template.volumes.add(name=volume_name)
    return obj


def _condition(obj: object_pb2.Object, type: str) -> meta_pb2.Condition | None:
    return next((c for c in obj.volume.status.conditions if c.type == type), None)


async def test_pending_without_its_storage_then_ready_with_the_path() -> None:
    harness = Harness(volume.CONTROLLER)
    client = harness.client
    await client.apply(_volume())
    await harness.settle()
    vol = client.stored(kinds.VOLUME, "home", zone="z", workspace="w")
    assert vol.volume.status.phase == volumes.PENDING
    ready = _condition(vol, "Ready")
    assert ready is not None and ready.reason == "StorageNotFound"
    assert "storage 'nfs-1' does not exist in zone 'z'" in ready.message
    assert volumes.FINALIZER in vol.metadata.finalizers

    await client.apply(_storage())
    await harness.settle()
    vol = client.stored(kinds.VOLUME, "home", zone="z", workspace="w")
    assert (vol.volume.status.phase, vol.volume.status.path) == (volumes.READY,
                                                                 "/exports/w/home")
    # Settled: another look writes nothing (the writer skips an unchanged status).
    writes = len(client.writes)
    harness.enqueue(objects.ref_of(vol))
    await harness.settle()
    assert len(client.writes) == writes


async def test_a_volume_in_use_waits_for_its_users_before_it_goes() -> None:
    harness = Harness(volume.CONTROLLER)
    client = harness.client
    await client.apply(_storage())
    await client.apply(_volume())
    await client.apply(_user("job.0"))
    await harness.settle()
    vol = client.stored(kinds.VOLUME, "home", zone="z", workspace="w")
    assert list(vol.volume.status.used_by) == ["w/job.0 (workload job)"]

    await client.delete(kinds.VOLUME, "home", zone="z", workspace="w")
    await harness.settle()
    vol = client.stored(kinds.VOLUME, "home", zone="z", workspace="w")
    assert vol.volume.status.phase == volumes.TERMINATING
    in_use = _condition(vol, "InUse")
    assert in_use is not None and "in use by w/job.0 (workload job)" in in_use.message
    assert harness.recorder.reasons() == ["VolumeInUse"]

    await client.delete(kinds.CONTAINER, "job.0", zone="z", workspace="w")
    await harness.settle()
    assert client.names(kinds.VOLUME) == []  # the finalizer went, and the Volume with it


async def test_a_conflicting_status_write_is_made_again_on_the_fresh_object() -> None:
    harness = Harness(volume.CONTROLLER)
    client = harness.client
    await client.apply(_storage())
    await client.apply(_volume())
    client.fail("update_status", errors.Conflict("moved on"))
    await harness.settle()
    vol = client.stored(kinds.VOLUME, "home", zone="z", workspace="w")
    assert vol.volume.status.phase == volumes.READY


def test_a_task_is_one_user_however_many_jobs_it_runs() -> None:
    jobs = [f"w/t{i}" for i in range(25)]
    assert volume.summarize(jobs)[-1] == "... and 6 more"
    assert len(volume.summarize(jobs)) == volume.MAX_USED_BY
