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

from dora.api import conventions, errors, kinds, objects
from dora.api.client import ResourceClient
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions
from dora.runtime import reconcile, registry
from dora.runtime.cache import Cache, EventType, by_node, clone
from dora.runtime.clock import Clock
from dora.runtime.handlers import Event, Hook, Watch, named
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import EventRecorder, Option, Setup
from dora.runtime.status import write_status

log = reconcile.logger(__name__)

NOT_READY, LOST = "NotReady", "Lost"


class NodeLifecycle:
    name = "nodelifecycle"

    def __init__(self, *, client: ResourceClient, cache: Cache, clock: Clock,
                 recorder: EventRecorder,
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

    @staticmethod
    def build(setup: Setup) -> NodeLifecycle:
        return NodeLifecycle(client=setup.client, cache=setup.cache, clock=setup.clock,
                             recorder=setup.recorder, zone=setup.zone,
                             grace=setup.option("node_grace"),
                             fence_margin=setup.option("fence_margin"))

    def _key(self, node: str) -> Ref:
        return Ref(kinds.NODE, self.zone, "", node)

    def node_keys(self, event: Event) -> list[Ref]:
        return [self._key(event.object.metadata.name)]

    def lease_keys(self, event: Event) -> list[Ref]:
        name = event.object.metadata.name
        return [self._key(name.removeprefix(conventions.NODE_LEASE_PREFIX))]

    def container_keys(self, event: Event) -> list[Ref]:
        node = event.object.container.spec.node_name
        return [self._key(node)] if node else []

    def on_lease(self, event: Event) -> None:
        """A node Lease seen to go: the agent's TTL has passed already, no grace is due."""
        name = event.object.metadata.name
        if event.type is EventType.DELETED and name.startswith(
                conventions.NODE_LEASE_PREFIX):
            node = name.removeprefix(conventions.NODE_LEASE_PREFIX)
            self._missing_since[node] = self.clock.now() - self.grace

    async def reconcile(self, *, key: Ref) -> Result:
        name = key.name
        node = self.cache.store(kinds.NODE).get(key)
        containers = self.cache.store(kinds.CONTAINER).by_index("node", name)
        if node is not None and node.node.spec.fenced:
            await self._mark_not_ready(node, reason="NodeFenced",
                                       message="fenced by an administrator (doractl node "
                                               "fence); its containers are replaced elsewhere")
            for container in containers:
                await self._evict(container, f"node {name} was fenced by an administrator")
            return DONE
        lease = self.cache.store(kinds.LEASE).get_named(conventions.node_lease_name(name),
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

        def not_ready(obj: object_pb2.Object) -> None:
            obj.node.status.phase = NOT_READY
            conditions.set_condition(obj.node.status.conditions, type="Ready",
                                     status="False", reason=reason, message=message,
                                     now=self.clock.wall())

        await write_status(self.client, node, not_ready)
        log.warning("node %s is NotReady: %s", node.metadata.name, message)

    async def _evict(self, container: object_pb2.Object, why: str) -> None:
        """Mark ``container`` Lost (the event says so once), then let it go: its agent
        finalizer removed and the object deleted. The workload controller may delete a
        Lost container first: that is the same end."""
        meta = container.metadata
        ref = objects.ref_of(container)
        current = container
        if current.container.status.phase != LOST:

            def lost(obj: object_pb2.Object) -> None:
                status = obj.container.status
                status.phase, status.reason, status.message = LOST, "NodeLost", why

            written = await write_status(self.client, current, lost)
            if written is None:
                return
            current = written
            self.evicted += 1
            log.info("%s lost: %s", ref, why)
            self.recorder.warning(container, "ContainerLost", f"{meta.name}: {why}")
        try:
            if conventions.AGENT_FINALIZER in current.metadata.finalizers:
                obj = clone(current)
                obj.metadata.finalizers.remove(conventions.AGENT_FINALIZER)
                obj.container.ClearField("status")
                current, _ = await self.client.apply(obj)
            if not current.metadata.HasField("deletion_timestamp"):
                await self.client.delete(kinds.CONTAINER, meta.name, zone=meta.zone,
                                         workspace=meta.workspace,
                                         resource_version=current.metadata.resource_version)
        except errors.NotFound:
            return


def eager(container: object_pb2.Object) -> bool:
    """Whether the container's workload lets it be replaced before its old copy is
    known to be stopped (``config.replacement: Eager``)."""
    return container.container.spec.template.config.replacement == "Eager"


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="nodelifecycle",
    help="nodes whose agent's lease expired become NotReady; their containers are "
         "replaced elsewhere",
    build=NodeLifecycle.build,
    watches=[
        Watch(kinds.NODE, NodeLifecycle.node_keys),
        Watch(kinds.LEASE, NodeLifecycle.lease_keys,
              predicate=named(conventions.NODE_LEASE_PREFIX)),
        Watch(kinds.CONTAINER, NodeLifecycle.container_keys),
    ],
    hooks=[Hook(kinds.LEASE, NodeLifecycle.on_lease)],
    indexes={kinds.CONTAINER: {"node": by_node}},
    workers=2,
    options=[
        Option("node_grace", 15.0,
               "seconds a node that reported may go without its lease before its "
               "containers are replaced, when its lease was not seen to expire"),
        Option("fence_margin", 5.0,
               "seconds after a node's lease expired before its containers are replaced "
               "(its agent has stopped them by then); config.replacement: Eager "
               "workloads do not wait"),
    ],
    order=30,
))
