"""The scheduler: binds each pending Container to a node.

A reconcile of a Container key:

- gone, being deleted or committed (``dora.io/node``): nothing to do;
- reserved but not committed (a scheduler stopped half-way): verify, then
  commit or release;
- pending (no phase yet reads as ``Pending``): filter the nodes
  (``filters``), pick one (``strategies``, by ``config.affinity``; both kept
  up to date incrementally by ``placer``), then
  reserve, verify and commit (``binder``). When nothing fits, the container's
  status says why (condition ``Scheduled=False``, reason ``Unschedulable``) and
  it waits: it is queued again whenever a node, a node lease, or the
  resources held on a node change.

Choices are made one at a time inside the process (a lock around filter and
pick) and remembered as ``assumed`` until the cache shows them, so concurrent
workers never pick the same GPU; the binder protects against other processes.
"""

from __future__ import annotations

import random as random_module
from typing import cast

import anyio

from dora.api import conventions, kinds, objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions
from dora.controllers.scheduler import binder, filters, strategies
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
from dora.runtime.cache import Cache, EventType, by_node, unbound
from dora.runtime.clock import Clock
from dora.runtime.handlers import Event, Hook, Watch, named
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import EventRecorder, Option, Setup
from dora.runtime.status import write_status

log = reconcile.logger(__name__)

PENDING = "Pending"
SCHEDULED = "Scheduled"
UNSCHEDULABLE = "Unschedulable"
# Unschedulable containers are also looked at this often, in case an event was missed.
RETRY_UNSCHEDULABLE = 60.0


class Scheduler:
    name = "scheduler"

    def __init__(
        self,
        *,
        client: Client,
        cache: Cache,
        zone: str,
        clock: Clock,
        recorder: EventRecorder,
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
        self.assumed: dict[Ref, Placement] = {}
        self._lock = anyio.Lock()
        self.bound = 0

    # Wiring.

    @staticmethod
    def build(setup: Setup) -> Scheduler:
        # The binder's reads go to the apiserver's watch cache: the real client.
        return Scheduler(client=cast(Client, setup.client), cache=setup.cache, zone=setup.zone,
                         clock=setup.clock, recorder=setup.recorder,
                         rng=random_module.Random(setup.option("seed")))

    def _waiting(self) -> list[Ref]:
        return [objects.ref_of(c)
                for c in self.cache.store(kinds.CONTAINER).by_index("unbound", "")]

    # Hooks: what the placement snapshot must forget.

    def on_container(self, event: Event) -> None:
        for obj in (event.old, event.new):
            if obj is not None and obj.container.spec.node_name:
                self.snapshot.invalidate(obj.container.spec.node_name)

    def on_node(self, event: Event) -> None:
        if node_changed(event):
            self.snapshot.invalidate(event.object.metadata.name)

    def on_lease(self, event: Event) -> None:
        name = event.object.metadata.name
        if name.startswith(conventions.NODE_LEASE_PREFIX):
            self.snapshot.invalidate(name.removeprefix(conventions.NODE_LEASE_PREFIX))

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

    # Reconcile.

    async def reconcile(self, *, key: Ref) -> Result:
        container = self.cache.store(kinds.CONTAINER).get(key)
        if container is None or container.metadata.HasField("deletion_timestamp"):
            self.assumed.pop(key, None)
            return DONE
        if binder.committed(container):
            self.assumed.pop(key, None)
            return DONE
        if container.container.spec.node_name:
            await self._finish(container)
            return DONE
        return await self._schedule(key, container)

    async def _schedule(self, key: Ref, container: object_pb2.Object) -> Result:
        request = request_of(container)
        strategy = container.container.spec.template.config.affinity
        async with self._lock:
            choice = self.choose(key, request, strategy)
        if isinstance(choice, str):
            await self._unschedulable(container, choice)
            return Result(requeue_after=RETRY_UNSCHEDULABLE)
        placement = self.assumed[key]
        try:
            reserved = await binder.reserve(self.client, container, placement)
            await self._finish(reserved, capacity=choice.node.cpu_capacity)
        except BaseException:
            self.assumed.pop(key, None)
            raise
        return DONE

    def choose(self, key: Ref, request: filters.Request, strategy: str) -> filters.Fit | str:
        """Pick a node for ``request`` now and remember it as assumed for ``key``; or the
        Unschedulable message. The caller holds the lock; nothing here awaits (``bench/``
        measures this, the scheduler's whole placement work, on its own)."""
        self._drop_seen_assumptions()
        choice = self.placer.choose(request, strategy, assumed=self.assumed, rng=self.rng)
        if isinstance(choice, str):
            return choice
        self.assumed[key] = Placement(node=choice.node.name, gpus=choice.gpus,
                                      cpu_millicores=request.cpu_millicores,
                                      workload=request.workload,
                                      node_ports=request.node_ports)
        return choice

    async def _finish(self, reserved: object_pb2.Object, *, capacity: int | None = None) -> None:
        """Verify a reservation, then commit it, or release it and raise ``LostRace``."""
        key = objects.ref_of(reserved)
        if capacity is None:
            node = self.cache.store(kinds.NODE).get_named(reserved.container.spec.node_name,
                                                      zone=reserved.metadata.zone)
            capacity = node.node.status.cpu.count * 1000 if node is not None else 0
        try:
            await binder.verify(self.client, reserved, cpu_capacity=capacity)
        except binder.LostRace as exc:
            log.info("%s: %s; placing it again", key, exc)
            self.assumed.pop(key, None)
            await binder.release(self.client, reserved)
            raise
        bound = await binder.commit(self.client, reserved)
        self.bound += 1
        metrics.SCHEDULER_BINDS.inc()
        placement = placement_of(bound)
        gpus = ", ".join(str(g.index) for g in placement.gpus)
        self.recorder.normal(bound, SCHEDULED, f"bound to node {placement.node}"
                             + (f" (GPU {gpus})" if gpus else ""))
        log.info("%s bound to %s%s", key, placement.node, f" GPUs [{gpus}]" if gpus else "")

    def _drop_seen_assumptions(self) -> None:
        store = self.cache.store(kinds.CONTAINER)
        for key, placement in list(self.assumed.items()):
            current = store.get(key)
            if current is None or current.container.spec.node_name == placement.node:
                del self.assumed[key]

    async def _unschedulable(self, container: object_pb2.Object, message: str) -> None:
        metrics.SCHEDULER_UNSCHEDULABLE.inc()

        def pending(obj: object_pb2.Object) -> None:
            status = obj.container.status
            status.phase = PENDING
            conditions.set_condition(
                status.conditions, type=SCHEDULED, status="False", reason=UNSCHEDULABLE,
                message=message, now=self.clock.wall(),
            )

        if await write_status(self.client, container, pending) in (None, container):
            return  # gone, or it said so already
        log.info("%s: %s", objects.ref_of(container), message)
        self.recorder.warning(container, UNSCHEDULABLE, message)


def node_changed(event: Event) -> bool:
    """Whether a Node event changes what the filters read (agents report often: memory
    in use, last seen; those do not)."""
    return not (event.type in (EventType.UPDATED, EventType.RESYNC)
                and event.old is not None and event.new is not None
                and node_signature(event.old) == node_signature(event.new))


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="scheduler",
    help="binds pending Containers to nodes (filters, strategies, exclusive GPUs)",
    build=Scheduler.build,
    watches=[
        Watch(kinds.CONTAINER, Scheduler.container_keys),
        Watch(kinds.NODE, Scheduler.waiting_keys, predicate=node_changed),
        Watch(kinds.LEASE, Scheduler.waiting_keys,
              predicate=named(conventions.NODE_LEASE_PREFIX)),
    ],
    hooks=[
        Hook(kinds.CONTAINER, Scheduler.on_container),
        Hook(kinds.NODE, Scheduler.on_node),
        Hook(kinds.LEASE, Scheduler.on_lease),
    ],
    indexes={kinds.CONTAINER: {"node": by_node, "unbound": unbound}},
    workers="scheduler_workers",
    options=[
        Option("scheduler_workers", 16,
               "binds at once: each is a few apiserver round trips, and choosing the "
               "nodes is done one at a time anyway"),
        Option("seed", None, "seed of the Random placement strategy", type=int),
    ],
    order=20,
))
