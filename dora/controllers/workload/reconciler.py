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

from google.protobuf import timestamp_pb2

from dora.api import conventions, errors, kinds, objects
from dora.api.client import ResourceClient
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions, payers
from dora.controllers.events import label_value_ok
from dora.controllers.workload import status as workload_status
from dora.controllers.workload import versions
from dora.controllers.workload.plan import Plan, Replica, plan
from dora.runtime import reconcile, registry
from dora.runtime.cache import Cache, by_controller_owner, by_owner
from dora.runtime.clock import Clock
from dora.runtime.handlers import Event, Watch, own_key, owner_key
from dora.runtime.reconcile import DONE, Result, TerminalError
from dora.runtime.registry import EventRecorder, Option, Setup, at_least
from dora.runtime.status import write_status

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
        client: ResourceClient,
        cache: Cache,
        clock: Clock,
        recorder: EventRecorder,
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

    @staticmethod
    def build(setup: Setup) -> WorkloadController:
        return WorkloadController(
            client=setup.client, cache=setup.cache, clock=setup.clock,
            recorder=setup.recorder, rollout_timeout=setup.option("rollout_timeout"),
            create_batch=setup.option("create_batch"),
            version_history=setup.option("version_history"))

    def workloads_paid_by(self, event: Event) -> list[Ref]:
        """When a user's credit runs out or comes back: the workloads it pays for."""
        return payers.keys_paid_by(event, cache=self.cache, kind=kinds.WORKLOAD)

    async def reconcile(self, *, key: Ref) -> Result:
        workload = self.cache.store(kinds.WORKLOAD).get(key)
        if workload is None or workload.metadata.HasField("deletion_timestamp"):
            return DONE
        version, created = await versions.ensure(
            self.client, self.cache.store(kinds.WORKLOADVERSION), workload,
            history=self.version_history)
        number = version.workloadversion.spec.version
        if created:
            self.recorder.normal(workload, "NewVersion", f"version {number} of the spec")
        spec = workload.workload.spec
        # While the user who pays for it has no credit left, a workload runs no
        # container (new, started again or running): this controller alone decides it
        # and says so in its conditions; the credit controller only writes Usercredits.
        spent = payers.spent_credit(self.cache, workload)
        stopped = spec.stopped or spent is not None
        desired = 0 if stopped else max(0, spec.replica.count)
        containers = self.cache.store(kinds.CONTAINER).by_index("owner",
                                                                 workload.metadata.uid)
        now = self.clock.wall()
        replicas = [_replica(c, now_seconds=now.timestamp()) for c in containers]
        prefer = [n for n in workload.metadata.annotations.get(
            conventions.SCALE_DOWN_ANNOTATION, "").split(",") if n]
        step = plan(
            desired=desired, version=number, replicas=replicas,
            restart_always=spec.config.restart_policy == "Always", stopped=stopped,
            prefer=prefer, rollout_timeout=self.rollout_timeout,
            gang=spec.replica.gang,
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
                           containers=containers, spent=spent)
        return Result(requeue_after=requeue)

    async def _delete(self, workload: object_pb2.Object, container: object_pb2.Object,
                      why: str) -> None:
        try:
            await self.client.delete(kinds.CONTAINER, container.metadata.name,
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
        store = self.cache.store(kinds.CONTAINER)
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
                      step: Plan, containers: list[object_pb2.Object],
                      spent: object_pb2.Object | None) -> None:
        unschedulable = []
        for container in containers:
            if container.container.spec.node_name or container.metadata.HasField(
                    "deletion_timestamp"):
                continue
            condition = conditions.get(container.container.status.conditions, "Scheduled")
            if condition is not None and condition.status == "False":
                unschedulable.append((container.metadata.name, condition.message))
        held = credit_message(spent, zone=workload.metadata.zone)
        was = conditions.get(workload.workload.status.conditions, CREDITS_EXHAUSTED)

        def report(obj: object_pb2.Object) -> None:
            obj.workload.status.CopyFrom(workload_status.build(
                workload=obj, desired=desired, version=version, plan=step,
                unschedulable=unschedulable, held=held, now=self.clock.wall()))

        if await write_status(self.client, workload, report) is None:
            return
        if held and (was is None or was.message != held):
            self.recorder.warning(workload, CREDITS_EXHAUSTED, f"stopped: {held}")
        elif not held and was is not None and spent is None:
            self.recorder.normal(workload, CREDITS_AVAILABLE,
                                 "its user has credits again in zone "
                                 f"{workload.metadata.zone}: it runs again")


CREDITS_EXHAUSTED = conventions.CREDITS_EXHAUSTED_CONDITION
CREDITS_AVAILABLE = "CreditsAvailable"


def credit_message(spent: object_pb2.Object | None, *, zone: str) -> str:
    """What the condition ``CreditsExhausted`` says while ``spent`` (a Usercredit with
    no credit left) pays for a workload; "" when none does."""
    if spent is None:
        return ""
    status = spent.usercredit.status
    end = status.week_end.ToDatetime()
    return (f"{spent.metadata.name} has spent the weekly budget of {status.weekly:g} "
            f"credits in zone {zone}; the week restarts {end:%a %Y-%m-%d %H:%M} UTC")


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
    container = objects.new(kinds.CONTAINER, conventions.container_name(meta.name, index),
                            zone=meta.zone, workspace=meta.workspace)
    container.metadata.owner_references.add(kind=kinds.WORKLOAD, name=meta.name, uid=meta.uid,
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
        succeeded=(status.phase == "Exited" and status.exit_code == 0
                   and status.reason == "Completed"),
        world=spec.replicas,
    )


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _index(name: str) -> int:
    suffix = name.rpartition(".")[2]
    return int(suffix) if suffix.isdigit() else 1 << 30


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="workload",
    help="Workloads to Containers: scale, versions, rolling replacement, restarts, status",
    build=WorkloadController.build,
    watches=[
        Watch(kinds.WORKLOAD, own_key),
        Watch(kinds.CONTAINER, owner_key(kinds.WORKLOAD)),
        Watch(kinds.WORKLOADVERSION, owner_key(kinds.WORKLOAD)),
        Watch(kinds.USERCREDIT, WorkloadController.workloads_paid_by),
    ],
    indexes={
        kinds.WORKLOAD: {payers.WORKSPACE_INDEX: payers.by_workspace},
        kinds.CONTAINER: {"owner": by_controller_owner},
        kinds.WORKLOADVERSION: {"owner": by_owner},
        kinds.USERCREDIT: {payers.PAID_INDEX: payers.paid_workspaces},
    },
    workers="workers",
    options=[
        Option("rollout_timeout", 60.0,
               "seconds a new container may wait unscheduled before an old one is "
               "replaced anyway"),
        Option("create_batch", CREATE_BATCH,
               "containers one reconcile of a workload creates at most before it reads "
               "the spec again", check=at_least(1, "--create-batch")),
        Option("version_history", versions.HISTORY,
               "versions kept per workload, the oldest pruned",
               check=at_least(1, "--version-history")),
    ],
    order=10,
))
