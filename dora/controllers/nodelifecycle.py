"""The node lifecycle controller: a node whose agent is gone loses its containers,
but never while they may still be running.

An agent proves it is alive by keeping its Lease ``node.<name>`` (bound to an
etcd lease) alive. When that Lease disappears, or when a node that has
reported a status has none for ``grace`` seconds after this controller first
looked (so a controller that starts after an agent died does not wait
forever), the controller

1. sets the Node's status to ``NotReady`` with a ``Ready=False`` condition
   (reason ``NodeLeaseExpired``);
2. marks every Container bound to it ``Lost`` (reason ``NodeLost``), removes
   its ``dora.io/agent`` finalizer (no agent will) and deletes it; the workload
   (or task) controller then creates a replacement.

**Nothing runs twice by Dora's doing.** An agent cut off from the apiserver
cannot be told anything, so it fences itself: it stops its Docker containers
when its lease has gone unrenewed for the TTL less a margin
(``dora.agent.lease``). This controller evicts a node's containers only
``fence_margin`` seconds after the lease's expiry, by which time the old copy is
stopped even if the agent is alive behind a partition. A Workload that says
``config.replacement: Eager`` (its replicas may run twice for a moment) has its
containers evicted at the expiry itself. An administrator who knows a node is
dead declares it (``doractl node fence NAME``: ``spec.fenced``): its containers
are evicted at once, and its agent, should it come back, stops everything and
runs nothing until the node is unfenced.

Containers bound to a node that no longer exists are evicted at once. An agent
that comes back stops the Docker containers whose Container object is gone or
bound elsewhere, and reports Ready itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from dora.api import conventions, errors, objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions
from dora.controllers.events import Recorder
from dora.runtime import reconcile
from dora.runtime.cache import Cache, Delta, by_node, clone
from dora.runtime.clock import Clock
from dora.runtime.manager import Manager, Watch
from dora.runtime.reconcile import DONE, Result

log = reconcile.logger(__name__)

NOT_READY, LOST = "NotReady", "Lost"


class NodeLifecycle:
    name = "nodelifecycle"

    def __init__(self, *, client: Client, cache: Cache, clock: Clock, recorder: Recorder,
                 zone: str, grace: float = 15.0, fence_margin: float = 5.0) -> None:
        self.client = client
        self.cache = cache
        self.clock = clock
        self.recorder = recorder
        self.zone = zone
        self.grace = grace
        self.fence_margin = fence_margin
        # When each node was first seen without its lease (clock seconds).
        self._missing_since: dict[str, float] = {}
        self.evicted = 0

    def register(self, manager: Manager, *, workers: int = 2) -> None:
        manager.store("Node")
        manager.store("Lease")
        manager.store("Container", indexers={"node": by_node})
        manager.add_controller(self, workers=workers, watches=[
            Watch("Node", self._node_keys),
            Watch("Lease", self._lease_keys),
            Watch("Container", self._container_keys),
        ])

    def _key(self, node: str) -> Ref:
        return Ref("Node", self.zone, "", node)

    def _node_keys(self, delta: Delta) -> Iterable[Ref]:
        return [self._key(delta.object.metadata.name)]

    def _lease_keys(self, delta: Delta) -> Iterable[Ref]:
        name = delta.object.metadata.name
        if not name.startswith(conventions.NODE_LEASE_PREFIX):
            return []
        node = name.removeprefix(conventions.NODE_LEASE_PREFIX)
        if delta.new is None:
            # Seen to expire: the TTL has passed already, no grace is due.
            self._missing_since[node] = self.clock.now() - self.grace
        return [self._key(node)]

    def _container_keys(self, delta: Delta) -> Iterable[Ref]:
        node = delta.object.container.spec.node_name
        return [self._key(node)] if node else []

    async def reconcile(self, *, key: Ref) -> Result:
        name = key.name
        node = self.cache.store("Node").get(key)
        containers = self.cache.store("Container").by_index("node", name)
        if node is not None and node.node.spec.fenced:
            await self._mark_not_ready(node, reason="NodeFenced",
                                       message="fenced by an administrator (doractl node "
                                               "fence); its containers are replaced elsewhere")
            for container in containers:
                await self._evict(container, f"node {name} was fenced by an administrator")
            return DONE
        lease = self.cache.store("Lease").get_named(conventions.node_lease_name(name),
                                                    zone=key.zone)
        if lease is not None:
            self._missing_since.pop(name, None)
            return DONE
        if node is None:
            self._missing_since.pop(name, None)
            for container in containers:
                await self._evict(container, f"node {name} does not exist")
            return DONE
        if not node.node.status.phase and not containers:
            return DONE  # declared, never came up: nothing to lose
        since = self._missing_since.setdefault(name, self.clock.now())
        expired = since + self.grace  # when the agent's lease ran out
        now = self.clock.now()
        if now < expired:
            return Result(requeue_after=expired - now)
        await self._mark_not_ready(node, reason="NodeLeaseExpired",
                                   message="the agent stopped renewing its lease; its "
                                           "containers are replaced elsewhere")
        fenced = now >= expired + self.fence_margin
        why = f"node {name} is not ready: its agent's lease expired"
        waiting = False
        for container in containers:
            if fenced or eager(container):
                await self._evict(container, why)
            else:
                waiting = True
        if waiting:
            return Result(requeue_after=expired + self.fence_margin - now)
        return DONE

    async def _mark_not_ready(self, node: object_pb2.Object, *, reason: str,
                              message: str) -> None:
        status = node.node.status
        ready = conditions.get(status.conditions, "Ready")
        if (status.phase == NOT_READY and ready is not None and ready.status == "False"
                and ready.reason == reason):
            return
        obj = objects.new("Node", node.metadata.name, zone=node.metadata.zone)
        obj.node.status.CopyFrom(status)
        obj.node.status.phase = NOT_READY
        conditions.set_condition(obj.node.status.conditions, type="Ready", status="False",
                                 reason=reason, message=message, now=self.clock.wall())
        await self.client.update_status(obj)
        log.warning("node %s is NotReady: %s", node.metadata.name, message)

    async def _evict(self, container: object_pb2.Object, why: str) -> None:
        meta = container.metadata
        ref = objects.ref_of(container)
        current = container
        try:
            if current.container.status.phase != LOST:
                obj = clone(current)
                status = obj.container.status
                status.phase, status.reason, status.message = LOST, "NodeLost", why
                current = await self.client.update_status(obj)
            if conventions.AGENT_FINALIZER in current.metadata.finalizers:
                obj = clone(current)
                obj.metadata.finalizers.remove(conventions.AGENT_FINALIZER)
                obj.container.ClearField("status")
                current, _ = await self.client.apply(obj)
            if not meta.HasField("deletion_timestamp"):
                await self.client.delete("Container", meta.name, zone=meta.zone,
                                         workspace=meta.workspace,
                                         resource_version=current.metadata.resource_version)
        except errors.NotFound:
            return
        self.evicted += 1
        log.info("%s lost: %s", ref, why)
        self.recorder.warning(container, "ContainerLost", f"{meta.name}: {why}")


def eager(container: object_pb2.Object) -> bool:
    """Whether the container's workload lets it be replaced before its old copy is
    known to be stopped (``config.replacement: Eager``)."""
    return container.container.spec.template.config.replacement == "Eager"
