"""The scheduler: binds each pending Container to a node.

A reconcile of a Container key:

- gone, being deleted or committed (``dora.io/node``): nothing to do (its
  assumption, if any, is forgotten);
- bound from the version the cache still shows (the cache is behind): nothing to
  do, unless that bind's outcome is unknown, when the apiserver is asked;
- reserved but not committed (a scheduler of the earlier protocol stopped
  half-way): checked against the cache, then committed or released;
- pending (no phase yet reads as ``Pending``): filter the nodes
  (``filters``), pick one (``strategies``, by ``config.affinity``; both kept
  up to date incrementally by ``placer``), then bind it in one conditional write
  (``binder``). When nothing fits, the container's status says why (condition
  ``Scheduled=False``, reason ``Unschedulable``), an aggregated event tells its
  workload, and it waits: it is queued again whenever a node, a node lease, or
  the resources held on a node change. A container whose choice would break a
  Quota (``dora.controllers.queue.gate``, asked under the same lock) waits the
  same way with reason ``QuotaExceeded``; one whose turn it is not (a pending
  container of the same shape ranks ahead: ``dora.controllers.queue.turn``)
  waits a moment with reason ``Queued``. In a zone with ``spec.preemption``, one
  for which no node has room may stop running containers of lower priority and
  of another account (``dora.controllers.queue.preempt``).
- a gang's replica (``template.replica.gang``): the whole gang, all at once or
  none (``gang``; reason ``GangWaiting``).

Choices are made one at a time inside the process (a lock around filter and
pick, nothing awaited under it) and remembered as assumed (``binder.Assumed``)
until the cache shows their Container at another version than the one bound
from, so the binds of many workers are in flight at once and never pick the same
GPU; a failed bind forgets its assumption when the apiserver said no, and keeps
it while the outcome is unknown.
"""

from __future__ import annotations

import contextlib
import random as random_module
from collections.abc import Callable
from typing import cast

import anyio

from dora.api import conventions, errors, kinds, objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions
from dora.controllers.events import WARNING, Recorder
from dora.controllers.queue.gate import QUOTA_EXCEEDED, QuotaGate
from dora.controllers.queue.preempt import Preemptor
from dora.controllers.queue.turn import (
    DEFAULT_WORKSPACE_INDEX,
    QUEUED,
    RETRY_QUEUED,
    Turns,
    by_default_workspace,
)
from dora.controllers.scheduler import binder, filters, gang, strategies
from dora.controllers.scheduler.placer import Placer
from dora.controllers.scheduler.snapshot import (
    Placement,
    Snapshot,
    holds_resources,
    node_signature,
    placement_of,
    request_of,
)
from dora.observability import metrics
from dora.runtime import reconcile, registry
from dora.runtime.cache import Cache, EventType, by_node
from dora.runtime.clock import Clock
from dora.runtime.handlers import Event, Hook, Watch
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import Option, Setup
from dora.runtime.status import write_status

log = reconcile.logger(__name__)

PENDING = "Pending"
SCHEDULED = "Scheduled"
UNSCHEDULABLE = "Unschedulable"
# Unschedulable containers are also looked at this often, in case an event was missed.
RETRY_UNSCHEDULABLE = 60.0
# ...and this soon when room may have freed while it was being placed.
RETRY_AFTER_WAKE = 0.2


class Scheduler:
    name = "scheduler"

    def __init__(
        self,
        *,
        client: Client,
        cache: Cache,
        zone: str,
        clock: Clock,
        recorder: Recorder,
        rng: strategies.RandomSource | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.zone = zone
        self.clock = clock
        self.recorder = recorder
        self.rng = rng or random_module.Random()
        self.snapshot = Snapshot(cache=cache, zone=zone)
        self.placer = Placer(self.snapshot)
        # The assume cache: placements made that the cache does not show yet (``assumed``
        # is what the placer lays over the nodes; ``assumptions`` adds what was bound from).
        self.assumed: dict[Ref, Placement] = {}
        self.assumptions: dict[Ref, binder.Assumed] = {}
        self.quotas = QuotaGate(cache=cache)
        self.turns = Turns(cache=cache, quotas=self.quotas, now=clock.now)
        self.preemptor = Preemptor(client=client, cache=cache, recorder=recorder, zone=zone,
                                   account_of=self.turns.account_of)
        # Queues a key of this controller's (the one a Queued container yields to).
        self.enqueue: Callable[[Ref], None] = lambda key: None
        self._lock = anyio.Lock()
        self.bound = 0
        # kube-scheduler's unschedulable queue: the containers that found no room, queued
        # again (all at once) when something frees room; ``_wakes`` counts those moments,
        # so a container that was being placed during one is not left waiting.
        self.unschedulable: set[Ref] = set()
        self._wakes = 0
        # The replicas of gangs being bound: their assumptions stay while their status
        # changes (only binding, deletion or the end of the gang's bind drops them).
        self.gang_binding: set[Ref] = set()

    # Wiring.

    @staticmethod
    def build(setup: Setup) -> Scheduler:
        # The binder's reads go to the apiserver's watch cache, its events are
        # aggregated: the real client and recorder.
        scheduler = Scheduler(client=cast(Client, setup.client), cache=setup.cache,
                              zone=setup.zone, clock=setup.clock,
                              recorder=cast(Recorder, setup.recorder),
                              rng=random_module.Random(setup.option("seed")))
        scheduler.enqueue = setup.enqueue
        return scheduler

    async def observe_use(self) -> None:
        """The queue's record of recent use, kept while the process runs."""
        await self.turns.run()

    def _waiting(self) -> list[Ref]:
        """The containers to try again now that room may have freed (those that found
        none; the others are queued by their own events)."""
        self._wakes += 1
        waiting, self.unschedulable = self.unschedulable, set()
        return list(waiting)

    # Hooks: what the placement snapshot must forget.

    def on_container(self, event: Event) -> None:
        for obj in (event.old, event.new):
            if obj is not None and obj.container.spec.node_name:
                self.snapshot.invalidate(obj.container.spec.node_name)
        self.quotas.on_container(event)  # the quotas' and the queue's tallies
        self.turns.on_container(event)

    def on_node(self, event: Event) -> None:
        if node_changed(event):
            self.snapshot.invalidate(event.object.metadata.name)

    def on_lease(self, event: Event) -> None:
        if node_lease_came_or_went(event):
            self.snapshot.invalidate(
                event.object.metadata.name.removeprefix(conventions.NODE_LEASE_PREFIX))

    # Keys.

    def container_keys(self, event: Event) -> list[Ref]:
        """The container, unless committed; every waiting one when it freed resources."""
        old, new = event.old, event.new
        keys = []
        if new is not None and not binder.committed(new):
            keys.append(objects.ref_of(new))
        freed = old is not None and holds_resources(old) and (
            new is None or not holds_resources(new)
            or new.container.spec.node_name != old.container.spec.node_name
        )
        if freed:
            keys.extend(self._waiting())
        return keys

    def on_container_change(self, event: Event) -> list[Ref]:
        """What the informer does with a Container event for this controller: the
        hook, then the keys."""
        self.on_container(event)
        return self.container_keys(event)

    def waiting_keys(self, event: Event) -> list[Ref]:
        return self._waiting()

    def quota_keys(self, event: Event) -> list[Ref]:
        return self._waiting() if QuotaGate.quota_changed(event) else []

    # Reconcile.

    async def reconcile(self, *, key: Ref) -> Result:
        container = self.cache.store(kinds.CONTAINER).get(key)
        if container is None or container.metadata.HasField("deletion_timestamp"):
            self.forget(key)
            self.unschedulable.discard(key)
            return DONE
        if binder.committed(container):
            self.forget(key)
            self.unschedulable.discard(key)
            return DONE
        assumed = self.assumptions.get(key)
        # Bound (or maybe bound) from the version the cache still shows: it is behind.
        if (assumed is not None and assumed.base == container.metadata.resource_version
                and (not assumed.in_doubt or not await self._settle_doubt(key, assumed))):
            return DONE
        if container.container.spec.node_name:
            await self._finish(key, container)
            return DONE
        if gang.is_gang(container):
            return await self._schedule_gang(key, container)
        return await self._schedule(key, container)

    async def _schedule_gang(self, key: Ref, container: object_pb2.Object) -> Result:
        """Place every pending replica of ``container``'s gang, or none (``gang``)."""
        store = self.cache.store(kinds.CONTAINER)
        members = gang.members(store.by_index(gang.GANG_INDEX, gang.gang_key(container)))
        want = gang.world_size(container)
        if len(members) < want:  # the last one created places them all
            await self._unschedulable(container, f"{len(members)} of the gang's {want} "
                                      "replicas exist; it is placed when all do",
                                      reason=gang.GANG_WAITING)
            return Result(requeue_after=RETRY_UNSCHEDULABLE)
        members = members[:want]
        pending = [m for m in members if not m.container.spec.node_name]
        if not pending:
            return DONE
        request = request_of(container)
        strategy = container.container.spec.template.config.affinity
        chosen: list[tuple[Ref, object_pb2.Object]] = []
        why = over = None
        async with self._lock:
            wakes = self._wakes
            self._drop_seen_assumptions()
            if any(objects.ref_of(m) in self.gang_binding for m in pending):
                return DONE  # another worker is binding this gang (it retries if it fails)
            used = [m.container.spec.node_name for m in members if m.container.spec.node_name]
            for member in pending:
                ref = objects.ref_of(member)
                fit = self._choose_member(request, strategy, used)
                if isinstance(fit, str):
                    why = f"replica {gang.rank(member)}: {fit}"
                    break
                self.assume(ref, Placement(node=fit.node.name, gpus=fit.gpus,
                                           cpu_millicores=request.cpu_millicores,
                                           workload=request.workload,
                                           node_ports=request.node_ports),
                            base=member.metadata.resource_version)
                over = self.quotas.refusal(key=ref, container=member, gpus=fit.gpus,
                                           millicores=request.cpu_millicores,
                                           assumed=self.assumed)
                if over is not None:
                    break
                used.append(fit.node.name)
                chosen.append((ref, member))
            if why is None and over is None:
                self.gang_binding.update(ref for ref, _ in chosen)
            if why is not None or over is not None:
                for member in pending:
                    self.forget(objects.ref_of(member))
                if why is not None:
                    why = gang.shortfall(request, len(pending),
                                         self.snapshot.nodes(assumed=self.assumed), why)
        if over is not None:
            for member in pending:
                await self._unschedulable(member, f"the gang: {over}", reason=QUOTA_EXCEEDED)
            return Result(requeue_after=RETRY_UNSCHEDULABLE)
        if why is not None:
            for member in pending:
                await self._unschedulable(member, why, reason=gang.GANG_WAITING)
            if wakes != self._wakes:
                return Result(requeue_after=RETRY_AFTER_WAKE)
            self.unschedulable.add(key)
            return Result(requeue_after=RETRY_UNSCHEDULABLE)
        placements = [(ref, member, self.assumed[ref]) for ref, member in chosen]
        await self._bind_gang(placements, master=self._master(members, container))
        return DONE

    def _choose_member(self, request: filters.Request, strategy: str,
                       used: list[str]) -> filters.Fit | str:
        """A node for the gang's next replica (the caller holds the lock)."""
        if strategy != "Fill":
            return self.placer.choose(request, strategy, assumed=self.assumed, rng=self.rng)
        nodes = self.snapshot.nodes(assumed=self.assumed)
        fit = gang.pick_fill(nodes, request, used)
        if fit is None:
            _, reasons = filters.fits(nodes, request)
            return filters.unschedulable_message(request, reasons)
        return fit

    def _master(self, members: list[object_pb2.Object], container: object_pb2.Object) -> str:
        """Rank 0's ``host:port``: its node's address (bound, or just assumed)."""
        first = members[0]
        node_name = first.container.spec.node_name
        if not node_name:
            placement = self.assumed.get(objects.ref_of(first))
            node_name = placement.node if placement is not None else ""
        node = self.cache.store(kinds.NODE).get_named(node_name, zone=first.metadata.zone)
        return f"{gang.node_address(node, node_name)}:{gang.master_port(container)}"

    async def _bind_gang(self, chosen: list[tuple[Ref, object_pb2.Object, Placement]], *,
                         master: str) -> None:
        """Bind the gang's replicas, one write each; a replica whose status changed
        meanwhile (another worker said it waits) is bound again at its new version.
        When one cannot be bound (deleted, or bound by someone else), the ones already
        bound are deleted (their workload makes them again, pending), so no partial
        gang holds GPUs; the others' assumptions are forgotten."""
        bound: list[object_pb2.Object] = []
        try:
            for ref, member, placement in chosen:
                result = await self._bind_member(ref, member, placement, master=master)
                bound.append(result)
                self._bound(ref, result)
        except BaseException as exc:
            log.warning("gang of %s: a bind failed (%s); releasing %d bound replicas",
                        chosen[0][0], exc, len(bound))
            for obj in bound:
                with anyio.CancelScope(shield=True), contextlib.suppress(errors.DoraError):
                    await self.client.delete(obj.kind, obj.metadata.name,
                                             zone=obj.metadata.zone,
                                             workspace=obj.metadata.workspace)
            done = {objects.ref_of(b) for b in bound}
            for ref, _, _ in chosen:
                assumed = self.assumptions.get(ref)
                if ref in done or binder.definite(exc):
                    self.forget(ref)
                elif assumed is not None:
                    assumed.in_doubt = True
            raise
        finally:
            self.gang_binding.difference_update(ref for ref, _, _ in chosen)

    async def _bind_member(self, ref: Ref, member: object_pb2.Object, placement: Placement,
                           *, master: str) -> object_pb2.Object:
        for _ in range(3):
            try:
                return await binder.bind(self.client, member, placement, master=master)
            except errors.Conflict:
                fresh = await self.client.get(ref.kind, ref.name, zone=ref.zone,
                                              workspace=ref.workspace)
                if (fresh.metadata.uid != member.metadata.uid or fresh.container.spec.node_name
                        or fresh.metadata.HasField("deletion_timestamp")):
                    raise
                member = fresh
                self.assume(ref, placement, base=fresh.metadata.resource_version)
        raise binder.LostRace(f"{ref.name} kept changing while its gang was bound")

    async def _schedule(self, key: Ref, container: object_pb2.Object) -> Result:
        request = request_of(container)
        strategy = container.container.spec.template.config.affinity
        async with self._lock:
            wakes = self._wakes
            choice = self.choose(key, request, strategy,
                                 base=container.metadata.resource_version)
            over = None if isinstance(choice, str) else self.quotas.refusal(
                key=key, container=container, gpus=choice.gpus,
                millicores=request.cpu_millicores, assumed=self.assumed)
            queued = None if over is not None or isinstance(choice, str) else self.turns.ahead(
                key=key, container=container, gpus=choice.gpus,
                millicores=request.cpu_millicores, assumed=self.assumed)
            if over is not None or queued is not None:
                self.forget(key)
        if over is not None:
            await self._unschedulable(container, over, reason=QUOTA_EXCEEDED)
            return self._wait(key, wakes)
        if queued is not None:
            self.enqueue(queued.first)
            await self._unschedulable(container, queued.message, reason=QUEUED)
            return Result(requeue_after=RETRY_QUEUED)
        if isinstance(choice, str):
            if self.preemptor.enabled():
                async with self._lock:
                    nodes = self.snapshot.nodes(assumed=self.assumed)
                note = await self.preemptor.preempt(key=key, container=container,
                                                    request=request, nodes=nodes)
                if note is not None:
                    await self._unschedulable(container, f"{choice}; {note}")
                    return Result(requeue_after=RETRY_QUEUED)
            await self._unschedulable(container, choice)
            return self._wait(key, wakes)
        await self._bind(key, container, self.assumed[key])
        return DONE

    def _wait(self, key: Ref, wakes: int) -> Result:
        """Wait among the unschedulable until room may have freed (a container freed
        resources, a node or a Quota changed); look again soon if that happened while
        this one was being placed (``wakes`` then differs)."""
        if wakes != self._wakes:
            return Result(requeue_after=RETRY_AFTER_WAKE)
        self.unschedulable.add(key)
        return Result(requeue_after=RETRY_UNSCHEDULABLE)

    def choose(self, key: Ref, request: filters.Request, strategy: str, *,
               base: int = 0) -> filters.Fit | str:
        """Pick a node for ``request`` now and assume it for ``key`` (whose Container is at
        resourceVersion ``base``); or the Unschedulable message. The caller holds the
        lock; nothing here awaits (``bench/`` measures this, the scheduler's whole
        placement work, on its own)."""
        self._drop_seen_assumptions()
        choice = self.placer.choose(request, strategy, assumed=self.assumed, rng=self.rng)
        if isinstance(choice, str):
            return choice
        self.assume(key, Placement(node=choice.node.name, gpus=choice.gpus,
                                   cpu_millicores=request.cpu_millicores,
                                   workload=request.workload,
                                   node_ports=request.node_ports), base=base)
        return choice

    # The assume cache.

    def assume(self, key: Ref, placement: Placement, *, base: int) -> None:
        self.assumptions[key] = binder.Assumed(placement=placement, base=base)
        self.assumed[key] = placement

    def forget(self, key: Ref) -> None:
        self.assumptions.pop(key, None)
        self.assumed.pop(key, None)

    def _drop_seen_assumptions(self) -> None:
        """Forget the assumptions the cache has caught up with: it shows their Container
        gone or at another version than the one bound from."""
        store = self.cache.store(kinds.CONTAINER)
        for key, assumed in list(self.assumptions.items()):
            current = store.get(key)
            if key in self.gang_binding and current is not None and not (
                    current.container.spec.node_name
                    or current.metadata.HasField("deletion_timestamp")):
                continue
            if current is None or current.metadata.resource_version != assumed.base:
                self.forget(key)

    async def _settle_doubt(self, key: Ref, assumed: binder.Assumed) -> bool:
        """Whether a bind whose outcome was unknown surely did not happen (then its
        assumption is forgotten); asks the apiserver, which knows."""
        try:
            stored = await self.client.get(key.kind, key.name, zone=key.zone,
                                           workspace=key.workspace)
        except errors.NotFound:
            self.forget(key)
            return False
        if stored.metadata.resource_version == assumed.base:
            self.forget(key)
            return True
        return False  # it changed: the watch will bring the new version

    async def _bind(self, key: Ref, container: object_pb2.Object, placement: Placement) -> None:
        """One write; the assumption stays until the cache shows the result."""
        try:
            bound = await binder.bind(self.client, container, placement)
        except BaseException as exc:
            assumed = self.assumptions.get(key)
            if binder.definite(exc):
                self.forget(key)
            elif assumed is not None:
                assumed.in_doubt = True
            raise
        self._bound(key, bound)

    async def _finish(self, key: Ref, reserved: object_pb2.Object) -> None:
        """A reservation left half-way by an earlier scheduler: commit it (one write) if
        the cache says it may keep what it reserved, else release it and raise
        ``LostRace``."""
        node_name = reserved.container.spec.node_name
        node = self.cache.store(kinds.NODE).get_named(node_name, zone=reserved.metadata.zone)
        capacity = node.node.status.cpu.count * 1000 if node is not None else 0
        async with self._lock:
            self._drop_seen_assumptions()
            why = binder.conflict(
                reserved, self.cache.store(kinds.CONTAINER).by_index("node", node_name),
                self.assumed.items(), key=key, cpu_capacity=capacity)
            if why is None:
                self.assume(key, placement_of(reserved),
                            base=reserved.metadata.resource_version)
        if why is not None:
            log.info("%s: %s; placing it again", key, why)
            await binder.release(self.client, reserved)
            raise binder.LostRace(why)
        await self._bind(key, reserved, placement_of(reserved))

    def _bound(self, key: Ref, bound: object_pb2.Object) -> None:
        self.bound += 1
        metrics.SCHEDULER_BINDS.inc()
        placement = placement_of(bound)
        gpus = ", ".join(str(g.index) for g in placement.gpus)
        where = f"node {placement.node}" + (f" (GPU {gpus})" if gpus else "")
        self.recorder.aggregated(bound, SCHEDULED, f"bound {bound.metadata.name} to {where}")
        log.info("%s bound to %s%s", key, placement.node, f" GPUs [{gpus}]" if gpus else "")

    async def _unschedulable(self, container: object_pb2.Object, message: str, *,
                             reason: str = UNSCHEDULABLE) -> None:
        metrics.SCHEDULER_UNSCHEDULABLE.inc()

        def pending(obj: object_pb2.Object) -> None:
            status = obj.container.status
            status.phase = PENDING
            # A quota or queue wait shows in `get` (REASON); an Unschedulable one in its
            # condition.
            status.reason = "" if reason == UNSCHEDULABLE else reason
            conditions.set_condition(
                status.conditions, type=SCHEDULED, status="False", reason=reason,
                message=message, now=self.clock.wall(),
            )

        if await write_status(self.client, container, pending) in (None, container):
            return  # gone, or it said so already
        log.info("%s: %s", objects.ref_of(container), message)
        self.recorder.aggregated(container, reason, message, type=WARNING)


def node_changed(event: Event) -> bool:
    """Whether a Node event changes what the filters read (agents report often: memory
    in use, last seen; those do not)."""
    return not (event.type in (EventType.UPDATED, EventType.RESYNC)
                and event.old is not None and event.new is not None
                and node_signature(event.old) == node_signature(event.new))


def node_lease_came_or_went(event: Event) -> bool:
    """Whether a node's Lease appeared or went: only whether it exists matters (its
    agent is alive), not its renewals."""
    return (event.object.metadata.name.startswith(conventions.NODE_LEASE_PREFIX)
            and event.type in (EventType.ADDED, EventType.DELETED))


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="scheduler",
    help="binds pending Containers to nodes (filters, strategies, exclusive GPUs)",
    build=Scheduler.build,
    watches=[
        Watch(kinds.CONTAINER, Scheduler.container_keys),
        Watch(kinds.NODE, Scheduler.waiting_keys, predicate=node_changed),
        Watch(kinds.LEASE, Scheduler.waiting_keys, predicate=node_lease_came_or_went),
        Watch(kinds.QUOTA, Scheduler.quota_keys),
    ],
    hooks=[
        Hook(kinds.CONTAINER, Scheduler.on_container),
        Hook(kinds.NODE, Scheduler.on_node),
        Hook(kinds.LEASE, Scheduler.on_lease),
    ],
    indexes={kinds.CONTAINER: {"node": by_node,
                               gang.GANG_INDEX: gang.by_gang},
             kinds.USER: {DEFAULT_WORKSPACE_INDEX: by_default_workspace}},
    reads=[kinds.ZONE],
    background=[Scheduler.observe_use],
    workers="scheduler_workers",
    options=[
        Option("scheduler_workers", 16,
               "binds at once: each is a few apiserver round trips, and choosing the "
               "nodes is done one at a time anyway"),
        Option("seed", None, "seed of the Random placement strategy", type=int),
    ],
    order=20,
))
