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
  resources held on a node change. A container whose choice would break a
  Quota (``dora.controllers.queue.gate``, asked under the same lock) waits the
  same way with reason ``QuotaExceeded``; one whose turn it is not (a pending
  container of the same shape ranks ahead: ``dora.controllers.queue.turn``)
  waits a moment with reason ``Queued``. In a zone with ``spec.preemption``, one
  for which no node has room may stop running containers of lower priority and
  of another account (``dora.controllers.queue.preempt``).

Choices are made one at a time inside the process (a lock around filter and
pick) and remembered as ``assumed`` until the cache shows them, so concurrent
workers never pick the same GPU; the binder protects against other processes.
"""

from __future__ import annotations

import contextlib
import random as random_module
from collections.abc import Iterable

import anyio

from dora.api import conventions, errors, objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions
from dora.controllers.events import Recorder
from dora.controllers.queue.gate import QUOTA_EXCEEDED, QuotaGate
from dora.controllers.queue.preempt import Preemptor
from dora.controllers.queue.turn import QUEUED, RETRY_QUEUED, Turns
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
from dora.runtime import reconcile
from dora.runtime.cache import Cache, Delta, by_node, clone, unbound
from dora.runtime.clock import Clock
from dora.runtime.manager import Manager, Watch
from dora.runtime.reconcile import DONE, Controller, Result

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
        self.assumed: dict[Ref, Placement] = {}
        self.quotas = QuotaGate(cache=cache)
        self.turns = Turns(cache=cache, quotas=self.quotas, now=clock.now)
        self.preemptor = Preemptor(client=client, cache=cache, recorder=recorder, zone=zone,
                                   account_of=self.turns.account_of)
        self._controller: Controller | None = None
        self._lock = anyio.Lock()
        self.bound = 0

    # Wiring.

    def register(self, manager: Manager, *, workers: int = 16) -> None:
        manager.store("Container", indexers={"node": by_node, "unbound": unbound})
        manager.store("Node")
        manager.store("Lease")
        self.quotas.register(manager)
        self.turns.register(manager)
        self.preemptor.register(manager)
        self._controller = manager.add_controller(self, workers=workers, watches=[
            Watch("Container", self.on_container_change),
            Watch("Node", self._node_keys),
            Watch("Lease", self._lease_keys),
            Watch("Quota", lambda d: self._waiting() if QuotaGate.quota_changed(d) else []),
        ])

    def _waiting(self) -> list[Ref]:
        return [objects.ref_of(c) for c in self.cache.store("Container").by_index("unbound", "")]

    def on_container_change(self, delta: Delta) -> Iterable[Ref]:
        """The watch handler of Containers: forget the nodes they touch; the keys to queue."""
        old, new = delta.old, delta.new
        for obj in (old, new):
            if obj is not None and obj.container.spec.node_name:
                self.snapshot.invalidate(obj.container.spec.node_name)
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

    def _node_keys(self, delta: Delta) -> Iterable[Ref]:
        # Agents report often (memory in use, last seen); only what filters read matters.
        if delta.old is not None and delta.new is not None and (
                node_signature(delta.old) == node_signature(delta.new)):
            return []
        self.snapshot.invalidate(delta.object.metadata.name)
        return self._waiting()

    def _lease_keys(self, delta: Delta) -> Iterable[Ref]:
        name = delta.object.metadata.name
        if not name.startswith(conventions.NODE_LEASE_PREFIX):
            return []
        self.snapshot.invalidate(name.removeprefix(conventions.NODE_LEASE_PREFIX))
        return self._waiting()

    # Reconcile.

    async def reconcile(self, *, key: Ref) -> Result:
        container = self.cache.store("Container").get(key)
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
            over = None if isinstance(choice, str) else self.quotas.refusal(
                key=key, container=container, gpus=choice.gpus,
                millicores=request.cpu_millicores, assumed=self.assumed)
            queued = None if over is not None or isinstance(choice, str) else self.turns.ahead(
                key=key, container=container, gpus=choice.gpus,
                millicores=request.cpu_millicores, assumed=self.assumed)
            if over is not None or queued is not None:
                self.assumed.pop(key, None)
        if over is not None:
            await self._unschedulable(container, over, reason=QUOTA_EXCEEDED)
            return Result(requeue_after=RETRY_UNSCHEDULABLE)
        if queued is not None:
            if self._controller is not None:
                self._controller.enqueue(queued.first)
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
            node = self.cache.store("Node").get_named(reserved.container.spec.node_name,
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
        store = self.cache.store("Container")
        for key, placement in list(self.assumed.items()):
            current = store.get(key)
            if current is None or current.container.spec.node_name == placement.node:
                del self.assumed[key]

    async def _unschedulable(self, container: object_pb2.Object, message: str, *,
                             reason: str = UNSCHEDULABLE) -> None:
        metrics.SCHEDULER_UNSCHEDULABLE.inc()
        obj = clone(container)
        status = obj.container.status
        status.phase = PENDING
        # A quota or queue wait shows in `get` (REASON); an Unschedulable one in its
        # condition.
        status.reason = "" if reason == UNSCHEDULABLE else reason
        changed = conditions.set_condition(
            status.conditions, type=SCHEDULED, status="False", reason=reason,
            message=message, now=self.clock.wall(),
        )
        if not changed:
            return
        log.info("%s: %s", objects.ref_of(container), message)
        with contextlib.suppress(errors.Conflict):
            await self.client.update_status(obj)
        self.recorder.warning(container, reason, message)
