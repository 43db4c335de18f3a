"""The workload controller: keeps each Workload's Containers matching its spec.

A reconcile of a Workload key reads the workload and its containers from the
cache, makes sure its spec has a version (``versions``), asks ``plan`` for one
step, does it (deletes, then creates ``<workload>.<n>`` with the lowest free
``n``), and writes the status (``status``). Container names are deterministic
and created with ``create_only``, so a cache one step behind can never make a
duplicate: the create fails and the reconcile runs again.

A container also gets a replica slot (``spec.replicaIndex``, ``DORA_REPLICA_INDEX``
inside): the lowest one no live container holds. The name cannot be the slot: a
replacement starts while the container it replaces is still being removed under
its name. So a container replaced after it exited, was deleted, or was lost with
its node leaves its slot to its replacement; during a rollout a new container may
hold slot ``replicas`` until an old one goes.

A container starts with the workload's labels (``get containers -l app=x``; a
label changed on the workload later is copied onto its containers, one removed
stays), the replica count wanted when it was made, and ``spec.paused`` as the
workload has it (``dora.apiserver.services.pausing`` pauses the ones that exist).

A reconcile creates at most ``create_batch`` containers (``--create-batch``) and
then looks again at once (a requeue), reading the spec anew: a runaway
``replica.count`` scaled to 0 or deleted stops within one batch, and other
workloads' reconciles get their turn in between. A create refused because the
workspace is full (``RESOURCE_EXHAUSTED``, the apiserver's object quota) is a
Warning event ``QuotaExceeded`` and a look again after ``QUOTA_RETRY`` seconds;
deletes go on, so scaling down is never held up.

A deleted workload needs nothing: the garbage collector (``dora.controllers.gc``)
deletes its containers, versions and events, also those a reconcile created while
the workload was being deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from google.protobuf import timestamp_pb2

from dora.api import conventions, errors, objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions, payers
from dora.controllers.events import Recorder, label_value_ok
from dora.controllers.workload import status as workload_status
from dora.controllers.workload import versions
from dora.controllers.workload.plan import Plan, Replica, plan
from dora.runtime import reconcile
from dora.runtime.cache import Cache, Delta, by_controller_owner, by_owner
from dora.runtime.clock import Clock
from dora.runtime.manager import Manager, Watch, own_key
from dora.runtime.reconcile import DONE, Result, TerminalError

log = reconcile.logger(__name__)

# How soon to look again when a create found its name taken (the cache is behind).
NAME_TAKEN_RETRY = 0.2
# Containers one reconcile creates at most, and how soon the next batch is looked at.
CREATE_BATCH = 50
NEXT_BATCH = 0.01
# How soon to try creating again after the workspace's quota refused a create.
QUOTA_RETRY = 5.0


class WorkloadController:
    name = "workload"

    def __init__(
        self,
        *,
        client: Client,
        cache: Cache,
        clock: Clock,
        recorder: Recorder,
        rollout_timeout: float = 60.0,
        create_batch: int = CREATE_BATCH,
        version_history: int = versions.HISTORY,
    ) -> None:
        self.client = client
        self.create_batch = create_batch
        self.version_history = version_history
        self.cache = cache
        self.clock = clock
        self.recorder = recorder
        self.rollout_timeout = rollout_timeout

    def register(self, manager: Manager, *, workers: int = 4) -> None:
        manager.store("Workload")
        manager.store("Container", indexers={"owner": by_controller_owner})
        manager.store("Workloadversion", indexers={"owner": by_owner})
        manager.store("Workload", indexers={payers.WORKSPACE_INDEX: payers.by_workspace})
        manager.store("Usercredit", indexers={payers.PAID_INDEX: payers.paid_workspaces})
        manager.add_controller(self, workers=workers, watches=[
            Watch("Workload", own_key),
            Watch("Container", _owner_key),
            Watch("Workloadversion", _owner_key),
            Watch("Usercredit", self._workloads_paid_by),
        ])

    def _workloads_paid_by(self, delta: Delta) -> Iterable[Ref]:
        """When a user's credit runs out or comes back: the workloads it pays for."""
        return payers.keys_paid_by(delta, cache=self.cache, kind="Workload")

    def _credit_spent(self, workload: object_pb2.Object) -> bool:
        """Whether the user who pays for ``workload`` has no credit left in its zone."""
        return payers.spent_credit(self.cache, workload) is not None

    async def reconcile(self, *, key: Ref) -> Result:
        workload = self.cache.store("Workload").get(key)
        if workload is None or workload.metadata.HasField("deletion_timestamp"):
            return DONE
        version, created = await versions.ensure(
            self.client, self.cache.store("Workloadversion"), workload,
            history=self.version_history)
        number = version.workloadversion.spec.version
        if created:
            self.recorder.normal(workload, "NewVersion", f"version {number} of the spec")
        spec = workload.workload.spec
        # While its user's credit is spent a workload runs no container, also when it
        # is new or started again: none starts for the moment the credit controller
        # would take to stop it (it sets spec.stopped and the condition).
        held = conditions.get(workload.workload.status.conditions,
                              conventions.CREDITS_EXHAUSTED_CONDITION)
        stopped = (spec.stopped or (held is not None and held.status == "True")
                   or self._credit_spent(workload))
        desired = 0 if stopped else max(0, spec.replica.count)
        containers = self.cache.store("Container").by_index("owner", workload.metadata.uid)
        now = self.clock.wall()
        replicas = [_replica(c, now_seconds=now.timestamp()) for c in containers]
        prefer = [n for n in workload.metadata.annotations.get(
            conventions.SCALE_DOWN_ANNOTATION, "").split(",") if n]
        step = plan(
            desired=desired, version=number, replicas=replicas,
            restart_always=spec.config.restart_policy == "Always", stopped=stopped,
            prefer=prefer, rollout_timeout=self.rollout_timeout,
        )
        by_name = {c.metadata.name: c for c in containers}
        for name, why in step.delete:
            await self._delete(workload, by_name[name], why)
        requeue = step.requeue_after
        going = {name for name, _ in step.delete}
        slots = {slot_of(c) for c in containers if c.metadata.name not in going
                 and not c.metadata.HasField("deletion_timestamp")}
        batch = min(step.create, self.create_batch)
        if batch:
            requeue = await self._create_batch(workload, version, batch, desired=desired,
                                               held=slots, more=batch < step.create,
                                               otherwise=requeue)
        if not await self._copy_labels(workload, containers):
            requeue = NAME_TAKEN_RETRY
        await self._report(workload, desired=desired, version=number, step=step,
                           containers=containers)
        return Result(requeue_after=requeue)

    async def _delete(self, workload: object_pb2.Object, container: object_pb2.Object,
                      why: str) -> None:
        try:
            await self.client.delete("Container", container.metadata.name,
                                     zone=container.metadata.zone,
                                     workspace=container.metadata.workspace)
        except errors.NotFound:
            return
        reason = "Restarting" if why.startswith("it exited") else "Deleted"
        self.recorder.normal(workload, reason,
                             f"deleted container {container.metadata.name}: {why}")

    async def _copy_labels(self, workload: object_pb2.Object,
                           containers: list[object_pb2.Object]) -> bool:
        """Copy the workload's labels onto its containers; False after a conflict."""
        wanted = copied_labels(workload)
        for container in containers:
            have = container.metadata.labels
            if container.metadata.HasField("deletion_timestamp") or all(
                    have.get(k) == v for k, v in wanted.items()):
                continue
            update = object_pb2.Object()
            update.CopyFrom(container)
            update.metadata.labels.update(wanted)
            try:
                await self.client.apply(update)
            except (errors.Conflict, errors.NotFound):
                return False
        return True

    async def _create_batch(self, workload: object_pb2.Object, version: object_pb2.Object,
                            count: int, *, desired: int, held: set[int], more: bool,
                            otherwise: float) -> float:
        """Create ``count`` containers; how soon to look again: at once when ``more``
        are wanted, soon when a name was taken, later when the quota refused one."""
        try:
            if not await self._create(workload, version, count, desired=desired, held=held):
                return NAME_TAKEN_RETRY
        except errors.Exhausted as exc:
            self.recorder.warning(workload, "QuotaExceeded",
                                  f"cannot create more containers: {exc.message}")
            return QUOTA_RETRY
        return NEXT_BATCH if more else otherwise

    async def _create(self, workload: object_pb2.Object, version: object_pb2.Object,
                      count: int, *, desired: int, held: set[int]) -> bool:
        """Create ``count`` containers; False when a name was taken (cache behind)."""
        store = self.cache.store("Container")
        meta = workload.metadata
        index = 0
        for _ in range(count):
            while store.get_named(conventions.container_name(meta.name, index),
                                  zone=meta.zone, workspace=meta.workspace) is not None:
                index += 1
            slot = min(set(range(len(held) + 1)) - held)
            held.add(slot)
            container = new_container(workload, version, index, replicas=desired, slot=slot)
            index += 1
            try:
                await self.client.apply(container, create_only=True)
            except errors.AlreadyExists:
                return False
            except errors.Invalid as exc:
                raise TerminalError(f"cannot create {container.metadata.name}: {exc}") from exc
            self.recorder.normal(
                workload, "Created",
                f"created container {container.metadata.name} "
                f"(version {version.workloadversion.spec.version})",
            )
        return True

    async def _report(self, workload: object_pb2.Object, *, desired: int, version: int,
                      step: Plan, containers: list[object_pb2.Object]) -> None:
        unschedulable = []
        for container in containers:
            if container.container.spec.node_name or container.metadata.HasField(
                    "deletion_timestamp"):
                continue
            condition = conditions.get(container.container.status.conditions, "Scheduled")
            if condition is not None and condition.status == "False":
                unschedulable.append((container.metadata.name, condition.message))
        new_status = workload_status.build(
            workload=workload, desired=desired, version=version, plan=step,
            unschedulable=unschedulable, now=self.clock.wall(),
        )
        if new_status == workload.workload.status:
            return
        obj = objects.new("Workload", workload.metadata.name, zone=workload.metadata.zone,
                          workspace=workload.metadata.workspace)
        obj.workload.status.CopyFrom(new_status)
        with contextlib.suppress(errors.NotFound):
            await self.client.update_status(obj)


def copied_labels(workload: object_pb2.Object) -> dict[str, str]:
    """The labels a workload's containers carry: its own (but Dora's ``dora.io/``
    ones, which say where a container runs) and ``dora.io/workload``."""
    meta = workload.metadata
    labels = {k: v for k, v in meta.labels.items() if not k.startswith("dora.io/")}
    if label_value_ok(meta.name):
        labels[conventions.WORKLOAD_LABEL] = meta.name
    return labels


def slot_of(container: object_pb2.Object) -> int:
    """A container's replica slot; one made before slots has its name's index."""
    spec = container.container.spec
    return spec.replica_index if spec.HasField("replica_index") else _index(
        container.metadata.name)


def new_container(workload: object_pb2.Object, version: object_pb2.Object,
                  index: int, *, replicas: int = 0, slot: int | None = None
                  ) -> object_pb2.Object:
    meta = workload.metadata
    container = objects.new("Container", conventions.container_name(meta.name, index),
                            zone=meta.zone, workspace=meta.workspace)
    container.metadata.owner_references.add(kind="Workload", name=meta.name, uid=meta.uid,
                                            controller=True)
    container.metadata.labels.update(copied_labels(workload))
    spec = container.container.spec
    spec.workload = meta.name
    spec.version = version.workloadversion.spec.version
    spec.template.CopyFrom(version.workloadversion.spec.template)
    spec.shell_cmd = not version.workloadversion.spec.cmd_argv
    spec.replica_index = index if slot is None else slot
    spec.replicas = replicas
    spec.paused = workload.workload.spec.paused
    return container


def _replica(container: object_pb2.Object, *, now_seconds: float) -> Replica:
    spec, status, meta = container.container.spec, container.container.status, container.metadata
    scheduled = conditions.get(status.conditions, "Scheduled")
    created = _seconds(meta.creation_timestamp)
    ran = ended = None
    if status.HasField("started_at") and status.HasField("finished_at"):
        ran = max(0.0, _seconds(status.finished_at) - _seconds(status.started_at))
        ended = max(0.0, now_seconds - _seconds(status.finished_at))
    return Replica(
        name=meta.name,
        index=_index(meta.name),
        version=spec.version,
        phase=status.phase,
        terminating=meta.HasField("deletion_timestamp"),
        bound=bool(spec.node_name),
        unschedulable=scheduled is not None and scheduled.status == "False",
        age=max(0.0, now_seconds - created),
        ran=ran,
        ended=ended,
    )


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _index(name: str) -> int:
    suffix = name.rpartition(".")[2]
    return int(suffix) if suffix.isdigit() else 1 << 30


def _owner_key(delta: Delta) -> Iterable[Ref]:
    obj = delta.object
    meta = obj.metadata
    return [Ref("Workload", meta.zone, meta.workspace, o.name)
            for o in meta.owner_references if o.kind == "Workload" and o.controller]
