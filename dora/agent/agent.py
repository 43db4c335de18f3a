"""The agent's loop: lease first, then watch, Docker and reconcile, all at once.

``Agent.run`` starts, in order:

1. the node's Lease (``lease``: taken over from a previous run on the same Docker
   engine, waited for otherwise); nothing below touches Docker until the agent
   holds it, so a second agent with the same node name stays idle;
2. the Node status reporter (``nodestatus``);
3. a watch of the Containers in the zone labelled ``dora.io/node=<node>`` (every
   workspace), feeding a cache; every change queues that Container's key;
4. once the watch has replayed the current objects (its first bookmark):
   the work queue, running one reconcile per key (``containers``); a poll of
   Docker every second, queueing the key of every Docker container of this node
   that appeared, changed state or went; and a periodic resync of every key.

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
import time
from dataclasses import dataclass

from dora.agent.containers import NODE_LABEL, ContainerCache, Reconciler, key_of
from dora.agent.docker_driver import Engine, EngineError
from dora.agent.inventory import Inventory
from dora.agent.lease import NodeLease, aclose
from dora.agent.nodestatus import NodeReporter
from dora.agent.workqueue import WorkQueue
from dora.api import errors, labels
from dora.api.client import Client, WatchEvent
from dora.api.objects import Ref

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


class Agent:
    def __init__(self, *, config: Config, client: Client, engine: Engine,
                 inventory: Inventory) -> None:
        self.config = config
        self.client = client
        self.engine = engine
        self.cache = ContainerCache()
        self.lease = NodeLease(
            client=client, node=config.node, zone=config.zone, ttl=config.lease_ttl,
            identity=engine.engine_id,
            # A margin of at most a quarter of the TTL: a short TTL (tests) must not
            # fence a live agent for one slow refresh.
            fence_after=config.lease_ttl - min(config.fence_margin, config.lease_ttl / 4),
            on_fence=lambda: self.fence("its lease went unrenewed (cut off from the "
                                        "apiserver?); the container is replaced elsewhere"))
        # Set while the Node is fenced by an administrator: nothing runs.
        self.node_fenced = False
        self.queue: WorkQueue[Ref] = WorkQueue(self._reconcile)
        self.reconciler = Reconciler(
            client=client, engine=engine, cache=self.cache, node=config.node,
            simulated_gpus=inventory.simulated, stop_timeout=config.stop_timeout,
            requeue=lambda key: self.queue.add_after(key, 0.5),
        )
        self.reporter = NodeReporter(
            client=client, node=config.node, zone=config.zone, inventory=inventory,
            engine=engine, lease=self.lease, assignments=self.cache.gpu_assignments,
            every=config.status_every, heartbeat=config.status_heartbeat,
        )
        self.selector = f"{NODE_LABEL}={config.node}"
        self._matches = labels.parse(self.selector).matches
        # Set once the watch has replayed what is bound to the node.
        self.synced = asyncio.Event()
        # Set once the first Docker poll after the sync has queued what it found.
        self.ready = asyncio.Event()

    async def run(self) -> None:
        node, zone = self.config.node, self.config.zone
        log.info("dora-agent for node %s in zone %s starting", node, zone)
        async with asyncio.TaskGroup() as group:
            group.create_task(self.lease.run(), name="lease")
            await self.lease.acquired.wait()
            group.create_task(self.reporter.run(), name="node-status")
            group.create_task(self._watch(), name="watch-containers")
            group.create_task(self._watch_node(), name="watch-node")
            await self.synced.wait()
            log.info("node %s: %d Container(s) bound to it", node, len(self.cache))
            group.create_task(self.queue.run(), name="reconcile")
            group.create_task(self._poll_docker(), name="poll-docker")
            group.create_task(self._resync(), name="resync")

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

    async def _watch_node(self) -> None:
        """Follow this node's ``spec.fenced``: fence on it, and keep fenced while set."""
        backoff = 0.2
        while True:
            stream = self.client.watch("Node", zone=self.config.zone)
            try:
                async for event in stream:
                    backoff = 0.2
                    if (event.type == WatchEvent.BOOKMARK
                            or event.object.metadata.name != self.config.node):
                        continue
                    fenced = (event.type != WatchEvent.DELETED
                              and event.object.node.spec.fenced)
                    if fenced and not self.node_fenced:
                        self.node_fenced = True
                        await self.fence("the node was fenced by an administrator")
                    elif not fenced and self.node_fenced:
                        self.node_fenced = False
                        log.warning("node %s is no longer fenced", self.config.node)
                        for key in self.cache.refs():
                            self.queue.add(key)
            except errors.DoraError as exc:
                log.debug("Node watch failed (retrying in %.1fs): %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                await aclose(stream)

    async def _reconcile(self, key: Ref) -> None:
        if self.node_fenced:
            # Declared dead: run nothing; Containers still bound are failed as Fenced.
            obj = self.cache.get(key)
            if obj is None or obj.container.status.docker_id not in self.reconciler.fenced:
                self.queue.add_after(key, 2.0)
                return
        if not self.lease.held.is_set():
            # Lost and not yet taken again: maybe another agent holds the node now.
            self.queue.add_after(key, 1.0)
            return
        await self.reconciler.reconcile(key)

    async def _watch(self) -> None:
        backoff = 0.2
        while True:
            replayed: set[Ref] | None = set()
            stream = self.client.watch("Container", zone=self.config.zone,
                                       label_selector=self.selector, bookmarks=True)
            try:
                async for event in stream:
                    backoff = 0.2
                    if event.type == WatchEvent.BOOKMARK:
                        if replayed is not None:
                            # The replay is complete: what the cache has beyond it is gone.
                            for key in set(self.cache.refs()) - replayed:
                                self.cache.pop(key)
                                self.queue.add(key)
                            replayed = None
                            self.synced.set()
                        continue
                    obj = event.object
                    key = key_of(obj)
                    if replayed is not None:
                        replayed.add(key)
                    if event.type == WatchEvent.DELETED or not self._matches(
                        obj.metadata.labels
                    ):
                        self.cache.pop(key)
                    else:
                        self.cache.put(obj)
                    self.queue.add(key)
            except errors.Gone:
                log.info("Container watch too old; listing again")
            except errors.DoraError as exc:
                log.warning("Container watch failed (retrying in %.1fs): %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                await aclose(stream)

    async def _poll_docker(self) -> None:
        seen: dict[str, tuple[Ref | None, str]] = {}
        last_error = 0.0
        while True:
            try:
                found = await self.engine.list(node=self.config.node)
            except EngineError as exc:
                if time.monotonic() - last_error > 60:
                    last_error = time.monotonic()
                    log.warning("cannot list Docker containers: %s", exc)
                await asyncio.sleep(self.config.docker_poll_every)
                continue
            now = {s.id: (s.key, s.state) for s in found}
            for docker_id, (key, state) in now.items():
                if key is None and self.lease.held.is_set():
                    log.warning("removing Docker container %s: labelled for node %s but "
                                "naming no Container", docker_id[:12], self.config.node)
                    await self._remove_quietly(docker_id)
                elif key is not None and seen.get(docker_id) != (key, state):
                    self.queue.add(key)
            for docker_id, (key, _) in seen.items():
                if docker_id not in now and key is not None:
                    self.queue.add(key)
            seen = now
            self.ready.set()
            await asyncio.sleep(self.config.docker_poll_every)

    async def _remove_quietly(self, docker_id: str, *, stop_timeout: float | None = None) -> None:
        try:
            await self.engine.remove(docker_id, stop_timeout=self.config.stop_timeout
                                     if stop_timeout is None else stop_timeout)
        except EngineError as exc:
            log.warning("cannot remove Docker container %s: %s", docker_id[:12], exc)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_every)
            for key in self.cache.refs():
                self.queue.add(key)
