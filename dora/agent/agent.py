"""The agent: one controller on ``dora.runtime``, started once the node's Lease is held.

``Agent.run`` starts, in order:

1. the node's Lease (``lease``: taken over from a previous run on the same Docker
   engine, waited for otherwise); nothing below touches Docker until the agent
   holds it, so a second agent with the same node name stays idle;
2. the Node status reporter (``nodestatus``), and, once the controller runs, the
   containers' usage sampled at the same cadence (``usage``);
3. two informers (``dora.runtime.informer``: list, then watch from there, a
   silent watch reopened, a periodic relist that repairs the cache): one of the
   Containers in the zone labelled ``dora.io/node=<node>`` (every workspace),
   one of this node's Node (for ``spec.fenced``). Every change queues a key;
4. once both have listed: the controller (``dora.runtime.reconcile``: a work
   queue with one reconcile per key at a time, backoff, delayed adds), and the
   second source of keys, a poll of Docker every ``docker_poll_every`` seconds
   that queues the key of every Docker container of this node that appeared,
   changed state or went.

The controller's keys are Containers (``containers``: make Docker match) and the
node's own Node (fence or unfence). Time enters through a ``Clock``
(``dora.runtime.clock``): the poll, requeues and backoff wait on it.

Restart safety falls out of the order: the first Docker poll happens after the
cache is complete, so every Docker container the agent finds is judged against
the full list of what is bound to it. Those still bound are adopted as they
are (same Docker id, no restart); the rest are removed. A Docker container
labelled for this node without the labels that name a Container is removed too.

Docker is polled rather than followed through its event stream: one cheap
``docker ps`` a second is robust to engine restarts and dropped streams, and the
reconcile re-reads the truth anyway.

While the agent does not hold the Lease (lost, not yet taken again) reconciles
wait: another agent may hold the node by then.

Cancelling ``run`` stops the agent and leaves Docker as it is: containers keep
running and are adopted by the next start.

**Fencing.** Two things make the agent stop every container of its node (``fence``)
and fail their Containers with reason ``Fenced`` once it can write again: its lease
going ``fence_margin`` seconds short of its TTL without a refresh (it may be cut
off, and its containers are about to be replaced elsewhere: ``lease``), and its
Node declared dead by an administrator (``spec.fenced``: ``doractl node fence``),
which it honours on return and for as long as it lasts, running nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import anyio

from dora.agent.containers import NODE_LABEL, Reconciler, by_gpu, gpu_assignments, key_of
from dora.agent.docker_driver import Engine, EngineError
from dora.agent.inventory import Inventory
from dora.agent.lease import NodeLease
from dora.agent.nodestatus import NodeReporter
from dora.agent.usage import UsageReporter
from dora.api.client import Client
from dora.api.objects import Ref
from dora.runtime.cache import Delta, Store
from dora.runtime.clock import Clock, RealClock
from dora.runtime.informer import Informer
from dora.runtime.manager import own_key
from dora.runtime.reconcile import DONE, Controller, Result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    node: str
    zone: str = "default"
    lease_ttl: int = 15
    # Seconds to wait after SIGTERM before Docker kills a container being removed.
    stop_timeout: float = 10.0
    docker_poll_every: float = 1.0
    resync_every: float = 30.0
    status_every: float = 5.0
    status_heartbeat: float = 30.0
    # Fence this many seconds before the lease's TTL runs out without a refresh.
    fence_margin: float = 3.0
    # Reopen a watch that has said nothing (not even a bookmark) for this long.
    stall_timeout: float = 60.0
    workers: int = 16


class Agent:
    name = "agent"

    def __init__(self, *, config: Config, client: Client, engine: Engine,
                 inventory: Inventory, clock: Clock | None = None) -> None:
        self.config = config
        self.client = client
        self.engine = engine
        self.clock: Clock = clock or RealClock()
        self.lease = NodeLease(
            client=client, node=config.node, zone=config.zone, ttl=config.lease_ttl,
            identity=engine.engine_id, clock=self.clock,
            # A margin of at most a quarter of the TTL: a short TTL (tests) must not
            # fence a live agent for one slow refresh.
            fence_after=config.lease_ttl - min(config.fence_margin, config.lease_ttl / 4),
            on_fence=lambda: self.fence("its lease went unrenewed (cut off from the "
                                        "apiserver?); the container is replaced elsewhere"))
        self.selector = f"{NODE_LABEL}={config.node}"
        # The Containers bound to this node, and this node's Node.
        self.store = Store("Container", indexers={"gpu": by_gpu})
        self.nodes = Store("Node")
        self.informers = [
            Informer(client=client, store=store, clock=self.clock, zone=config.zone,
                     label_selector=selector, resync=config.resync_every,
                     stall_timeout=config.stall_timeout)
            for store, selector in ((self.store, self.selector), (self.nodes, ""))
        ]
        self.node_key = Ref("Node", config.zone, "", config.node)
        # Set while the Node is fenced by an administrator and the agent has acted on it.
        self.node_fenced = False
        self.controller = Controller(reconciler=self, clock=self.clock,
                                     workers=config.workers, base_delay=0.2, max_delay=30.0)
        self.informers[0].add_handler(lambda delta: self._enqueue(own_key(delta)))
        self.informers[1].add_handler(self._node_changed)
        self.reconciler = Reconciler(
            client=client, engine=engine, cache=self.store, node=config.node,
            simulated_gpus=inventory.simulated, stop_timeout=config.stop_timeout,
        )
        self.reporter = NodeReporter(
            client=client, node=config.node, zone=config.zone, inventory=inventory,
            engine=engine, lease=self.lease, assignments=lambda: gpu_assignments(self.store),
            every=config.status_every, heartbeat=config.status_heartbeat,
        )
        self.usage = UsageReporter(
            engine=engine, store=self.store, reconciler=self.reconciler,
            gpu_utilization=self.reporter.gpu_utilization)
        # Set once the first Docker poll after the sync has queued what it found.
        self.ready = asyncio.Event()
        # Docker polls done (tests wait for a few instead of sleeping).
        self.polls = 0

    @property
    def synced(self) -> anyio.Event:
        """Set once the Containers bound to the node have been listed."""
        return self.informers[0].synced

    def _enqueue(self, keys: Iterable[Ref]) -> None:
        for key in keys:
            self.controller.enqueue(key)

    def _node_changed(self, delta: Delta) -> None:
        if delta.object.metadata.name == self.config.node:
            self._enqueue([self.node_key])

    async def run(self) -> None:
        node, zone = self.config.node, self.config.zone
        log.info("dora-agent for node %s in zone %s starting", node, zone)
        async with asyncio.TaskGroup() as group:
            group.create_task(self.lease.run(), name="lease")
            await self.lease.acquired.wait()
            group.create_task(self.reporter.run(), name="node-status")
            for informer in self.informers:
                group.create_task(informer.run(), name=f"informer-{informer.kind}")
            for informer in self.informers:
                await informer.synced.wait()
            log.info("node %s: %d Container(s) bound to it", node, len(self.store))
            group.create_task(self.controller.run(), name="reconcile")
            group.create_task(self._poll_docker(), name="poll-docker")
            group.create_task(self._sample_usage(), name="usage")

    async def _sample_usage(self) -> None:
        """The containers' usage (``usage``), sampled at the node status' cadence and only
        while the agent holds the node: without the Lease they are not its to write."""
        while True:
            if self.lease.held.is_set() and not self.node_fenced:
                try:
                    await self.usage.sample()
                except Exception:  # a measurement must never stop the agent
                    log.exception("cannot sample the containers' usage")
            await self.clock.sleep(self.config.status_every)

    async def fence(self, why: str) -> None:
        """Stop (and remove) every Docker container of this node, now."""
        try:
            found = await self.engine.list(node=self.config.node)
        except EngineError as exc:
            log.error("cannot list Docker containers to fence them: %s", exc)
            return
        for summary in found:
            self.reconciler.fenced[summary.id] = why
        await asyncio.gather(*(self._remove_quietly(s.id, stop_timeout=0) for s in found))
        log.warning("fenced: stopped %d container(s) of node %s: %s", len(found),
                    self.config.node, why)

    def declared_fenced(self) -> bool:
        """Whether the Node says ``spec.fenced`` (an administrator declared it dead)."""
        obj = self.nodes.get(self.node_key)
        return obj is not None and obj.node.spec.fenced

    async def reconcile(self, *, key: Ref) -> Result:
        if key == self.node_key:
            return await self._reconcile_node()
        if self.declared_fenced():
            # Declared dead: run nothing; Containers still bound are failed as Fenced.
            obj = self.store.get(key)
            if (not self.node_fenced or obj is None
                    or obj.container.status.docker_id not in self.reconciler.fenced):
                return Result(requeue_after=2.0)
        if not self.lease.held.is_set():
            # Lost and not yet taken again: maybe another agent holds the node now.
            return Result(requeue_after=1.0)
        return await self.reconciler.reconcile(key=key)

    async def _reconcile_node(self) -> Result:
        """Fence on the Node's ``spec.fenced``, and keep fenced while it is set."""
        fenced = self.declared_fenced()
        if fenced and not self.node_fenced:
            await self.fence("the node was fenced by an administrator")
            self.node_fenced = True
        elif not fenced and self.node_fenced:
            self.node_fenced = False
            log.warning("node %s is no longer fenced", self.config.node)
            self._enqueue(key_of(obj) for obj in self.store)
        return DONE

    async def _poll_docker(self) -> None:
        seen: dict[str, tuple[Ref | None, str]] = {}
        last_error: float | None = None
        while True:
            try:
                found = await self.engine.list(node=self.config.node)
            except EngineError as exc:
                if last_error is None or self.clock.now() - last_error > 60:
                    last_error = self.clock.now()
                    log.warning("cannot list Docker containers: %s", exc)
                await self.clock.sleep(self.config.docker_poll_every)
                continue
            now = {s.id: (s.key, s.state) for s in found}
            for docker_id, (key, state) in now.items():
                if key is None and self.lease.held.is_set():
                    log.warning("removing Docker container %s: labelled for node %s but "
                                "naming no Container", docker_id[:12], self.config.node)
                    await self._remove_quietly(docker_id)
                elif key is not None and seen.get(docker_id) != (key, state):
                    self._enqueue([key])
            self._enqueue(key for docker_id, (key, _) in seen.items()
                          if docker_id not in now and key is not None)
            seen = now
            self.polls += 1
            self.ready.set()
            await self.clock.sleep(self.config.docker_poll_every)

    async def _remove_quietly(self, docker_id: str, *, stop_timeout: float | None = None) -> None:
        try:
            await self.engine.remove(docker_id, stop_timeout=self.config.stop_timeout
                                     if stop_timeout is None else stop_timeout)
        except EngineError as exc:
            log.warning("cannot remove Docker container %s: %s", docker_id[:12], exc)
