"""The volume controller: a Volume is Ready when its Storage exists, and cannot go
while containers use it.

For each Volume of the zone, one reconcile reads the Volume, its Storage (same
zone, ``spec.storage``) and the Containers that mount it from the cache, and:

- keeps the finalizer ``dora.io/volume-protection`` on a live Volume;
- writes the status: ``phase`` Ready with ``path`` (seed 002's rule,
  ``dora.api.volumes.volume_path``) when the Storage exists, Pending with the
  condition ``Ready=False, reason StorageNotFound`` when it does not;
  ``usedBy`` names what uses it: ``<workspace>/<container> (workload <w>)`` of
  every Container mounting it whose Docker container may run (not Exited, Failed
  or Lost), except a Task's jobs, which are one entry for the whole task,
  ``<workspace>/<task> (task)``, however many of its jobs run; past
  ``MAX_USED_BY`` entries the rest are counted in a last one (``... and 12 more``);
- on a Volume being deleted: while it is used, the finalizer stays, the phase is
  Terminating and the condition ``InUse`` (and a Warning event) names the users;
  once none is left, the finalizer goes and the apiserver deletes it.

The node agent does not trust ``status.path``: it recomputes the path from the
specs with the same function and refuses a Volume that is not Ready (or is being
deleted), so a Volume on its way out is never mounted again.
"""

from __future__ import annotations

import bisect

from dora.api import errors, finalizers, kinds, objects, volumes
from dora.api.client import ResourceClient
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions
from dora.runtime import reconcile, registry
from dora.runtime.cache import Cache, clone
from dora.runtime.clock import Clock
from dora.runtime.handlers import Event, Watch, own_key
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import EventRecorder, Setup
from dora.runtime.status import write_status

log = reconcile.logger(__name__)

# Entries of status.usedBy, the last one saying how many more there are. Why a cap
# and a task as one entry: a 10,000-job task would otherwise make the status a
# list of 10,000 names, rewritten each time one of its jobs starts or ends.
MAX_USED_BY = 20
USE_INDEX = "volume-use"


def by_use(obj: object_pb2.Object) -> list[str]:
    """Files a Container that may have its volumes mounted under
    ``<zone>/<workspace>/<volume>\t<entry>`` for each Volume it mounts, the entry
    being how ``usedBy`` names it. The jobs of one task share their entry, so the
    index holds one value per task, not one per job: ``users`` reads the distinct
    values and never walks the jobs."""
    if not volumes.in_use(obj):
        return []
    task = task_of(obj)
    if task:
        entry = f"{obj.metadata.workspace}/{task} (task)"
    else:
        workload = obj.container.spec.workload
        entry = volumes.user_of(obj) + (f" (workload {workload})" if workload else "")
    zone = obj.metadata.zone
    return [f"{zone}/{workspace}/{name}\t{entry}" for workspace, name in volumes.mounts_of(obj)]


def by_storage(obj: object_pb2.Object) -> list[str]:
    return [obj.volume.spec.storage] if obj.volume.spec.storage else []


def task_of(container: object_pb2.Object) -> str:
    """The Task whose job ``container`` is (its controller owner), or ""."""
    return next((o.name for o in container.metadata.owner_references
                 if o.kind == kinds.TASK and o.controller), "")


def summarize(users: list[str]) -> list[str]:
    """``users`` as the status keeps them: the first ``MAX_USED_BY - 1`` and a count of
    the others, when there are more than ``MAX_USED_BY``."""
    if len(users) <= MAX_USED_BY:
        return users
    kept = users[:MAX_USED_BY - 1]
    return [*kept, f"... and {len(users) - len(kept)} more"]


class VolumeController:
    name = "volume"

    def __init__(self, *, client: ResourceClient, cache: Cache, clock: Clock,
                 recorder: EventRecorder, zone: str) -> None:
        self.client = client
        self.cache = cache
        self.clock = clock
        self.recorder = recorder
        self.zone = zone

    @staticmethod
    def build(setup: Setup) -> VolumeController:
        return VolumeController(client=setup.client, cache=setup.cache, clock=setup.clock,
                                recorder=setup.recorder, zone=setup.zone)

    def storage_keys(self, event: Event) -> list[Ref]:
        name = event.object.metadata.name
        return [objects.ref_of(v)
                for v in self.cache.store(kinds.VOLUME).by_index("storage", name)
                if v.metadata.zone == event.object.metadata.zone]

    @staticmethod
    def container_keys(_: object, event: Event) -> set[Ref]:
        """The Volumes a Container mounts (mounted before the change or after)."""
        keys: set[Ref] = set()
        for obj in (event.old, event.new):
            if obj is not None:
                zone = obj.metadata.zone
                keys.update(Ref(kinds.VOLUME, zone, workspace, name)
                            for workspace, name in volumes.mounts_of(obj))
        return keys

    def users(self, key: Ref) -> list[str]:
        """What may have it mounted, as the status names it: the Containers, a task's
        jobs as their task, at most ``MAX_USED_BY`` entries."""
        prefix = f"{key.zone}/{key.workspace}/{key.name}\t"
        values = self.cache.store(kinds.CONTAINER).index_values(USE_INDEX)
        first = bisect.bisect_left(values, prefix)
        found = []
        for value in values[first:]:
            if not value.startswith(prefix):
                break
            found.append(value[len(prefix):])
        return summarize(found)

    async def reconcile(self, *, key: Ref) -> Result:
        volume = self.cache.store(kinds.VOLUME).get(key)
        if volume is None:
            return DONE
        users = self.users(key)
        deleting = volume.metadata.HasField("deletion_timestamp")
        if deleting:
            if not users:
                await self._release(volume)
                return DONE
        elif volumes.FINALIZER not in volume.metadata.finalizers:
            volume = await self._protect(volume)
        await self._write_status(volume, users=users, deleting=deleting)
        return DONE

    async def _protect(self, volume: object_pb2.Object) -> object_pb2.Object:
        obj = clone(volume)
        obj.metadata.finalizers.append(volumes.FINALIZER)
        obj.volume.ClearField("status")
        stored, _ = await self.client.apply(obj)
        return stored

    async def _release(self, volume: object_pb2.Object) -> None:
        if volumes.FINALIZER not in volume.metadata.finalizers:
            return
        if await finalizers.change(self.client, volume, volumes.FINALIZER, add=False):
            log.info("%s: no container uses it any more; deleted", objects.ref_of(volume))

    async def _write_status(self, volume: object_pb2.Object, *, users: list[str],
                            deleting: bool) -> None:
        meta, spec = volume.metadata, volume.volume.spec
        storage = self.cache.store(kinds.STORAGE).get_named(spec.storage, zone=meta.zone)
        warnings: list[str] = []

        def mutate(obj: object_pb2.Object) -> None:
            self._status(obj, volume, storage, users=users, deleting=deleting,
                         warnings=warnings)

        try:
            await write_status(self.client, volume, mutate)
        except errors.NotFound:
            return
        for message in warnings[-1:]:
            self.recorder.warning(volume, "VolumeInUse", message)

    def _status(self, obj: object_pb2.Object, volume: object_pb2.Object,
                storage: object_pb2.Object | None, *, users: list[str], deleting: bool,
                warnings: list[str]) -> None:
        meta, spec = volume.metadata, volume.volume.spec
        status = obj.volume.status
        del status.used_by[:]
        status.used_by.extend(users)
        status.observed_generation = meta.generation
        now = self.clock.wall()
        if storage is None:
            status.phase, status.path = volumes.PENDING, ""
            conditions.set_condition(
                status.conditions, type="Ready", status="False", reason="StorageNotFound",
                message=f"storage {spec.storage!r} does not exist in zone {meta.zone!r}",
                now=now)
        else:
            try:
                path = volumes.path_of(volume, storage)
            except errors.Invalid as exc:
                status.phase, status.path = volumes.PENDING, ""
                conditions.set_condition(status.conditions, type="Ready", status="False",
                                         reason="InvalidPath", message=exc.message, now=now)
            else:
                status.phase, status.path = volumes.READY, path
                conditions.set_condition(
                    status.conditions, type="Ready", status="True", reason="StorageFound",
                    message=f"{storage.storage.spec.kind} storage {spec.storage!r}", now=now)
        if deleting:
            status.phase = volumes.TERMINATING
            message = (f"volume {meta.name!r} is in use by {', '.join(users)}; it is deleted "
                       "once they stop")
            if conditions.set_condition(status.conditions, type="InUse", status="True",
                                        reason="DeletionWaitsForUsers", message=message,
                                        now=now):
                warnings.append(message)
        else:
            conditions.remove(status.conditions, "InUse")


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="volume",
    help="Volumes Ready when their Storage exists, protected while containers use them",
    build=VolumeController.build,
    watches=[
        Watch(kinds.VOLUME, own_key),
        Watch(kinds.STORAGE, VolumeController.storage_keys),
        Watch(kinds.CONTAINER, VolumeController.container_keys),
    ],
    indexes={kinds.VOLUME: {"storage": by_storage}, kinds.CONTAINER: {USE_INDEX: by_use}},
    workers=2,
    order=40,
))
