"""The node's liveness: the Lease ``node.<node>`` bound to an etcd lease the agent
keeps alive through the apiserver.

While the agent refreshes its etcd lease, the Lease object exists; when the agent
dies or is cut off for longer than the TTL, etcd deletes it, and the
node-lifecycle controller marks the node NotReady and evicts its containers at
once. Two consequences shape this module.

**A restarted agent takes its Lease over; it never waits for it to expire.**
Waiting would let the Lease vanish, and with it every container on the node.
And a clean stop does not revoke the lease either, for the same reason: the
Lease must outlive a restart (kubelet's node lease behaves the same way).

**But never from a live twin.** The holder field is the node name, so it cannot
tell a previous run of this agent from another agent started with the same
``--node-name`` on another machine and alive right now. The Lease therefore
also carries the annotation ``dora.io/agent-identity``: the ID of the Docker
engine the agent drives (``docker info``; it survives dockerd restarts). On
start the agent creates the Lease (``create_only``); if it exists:

- bound to an etcd lease this process granted (one it gave up as lost while
  etcd still had it): it is moved to the new etcd lease;
- same holder and same engine identity: a previous run on this very engine,
  whose containers are the ones this agent adopts: it is taken over (a
  conditional update onto the new etcd lease), with no gap;
- anything else (another engine, no identity because Docker did not answer):
  the agent waits, loudly, until etcd deletes it, and only then creates its own.

Until the agent holds the Lease the first time it does not touch Docker
(``acquired``; ``held`` gates every reconcile after that), so a twin never runs
or removes a container. Two agents on one engine with one node name (a
misconfiguration) cannot run a container twice: they see the same Docker
containers. The newer one takes the Lease; the older one notices within a TTL
(it reads the Lease back), stops reconciling, and waits for the Lease to go
rather than taking it back.

**Fencing itself.** A cut-off agent cannot be told that its containers are being
replaced. So when no refresh has succeeded for ``fence_after`` seconds (the TTL
less a margin: before etcd drops the lease), it calls ``on_fence``, which stops
every container of the node, once per outage. The controllers start
replacements only a margin after the TTL (``dora.controllers.nodelifecycle``),
so at no moment do two copies of a replica run by Dora's doing.

**Keeping it.** One keep-alive stream refreshes the lease every TTL/3. The lease
is lost when the stream reports 0 seconds left (etcd dropped it), or when no
refresh succeeded for a whole TTL (apiserver unreachable: etcd has dropped it by
now). Then the agent grants a new lease and creates the Lease again. Every TTL it
also reads the Lease back: one deleted by hand is recreated at once; one bound to
an etcd lease that is not ours means another agent took the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from dora.api import conventions, errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.runtime.clock import Clock, RealClock

log = logging.getLogger(__name__)

IDENTITY_ANNOTATION = "dora.io/agent-identity"


async def aclose(stream: AsyncIterator[object]) -> None:
    """Close an async generator now (its ``finally`` cancels the gRPC call), not at GC."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


class NodeLease:
    def __init__(self, *, client: Client, node: str, zone: str, ttl: int = 15,
                 identity: Callable[[], Awaitable[str]],
                 fence_after: float | None = None,
                 on_fence: Callable[[], Awaitable[None]] | None = None,
                 clock: Clock | None = None) -> None:
        self.client = client
        # Times the fence (``last_refresh``, ``fence_after``): a test advances a fake one.
        self.clock: Clock = clock or RealClock()
        self.node = node
        self.zone = zone
        self.ttl = ttl
        self.name = conventions.node_lease_name(node)
        # Set while the agent holds the Lease.
        self.held = asyncio.Event()
        # Set once the agent has held it: from then on it may touch Docker.
        self.acquired = asyncio.Event()
        # Counts acquisitions, so the node reporter knows to write a fresh status.
        self.generation = 0
        self.lease_id = 0
        self._identify = identity
        self._identity = ""
        self._granted: set[int] = set()
        # Set when another agent took the Lease from us: we never take it back.
        self._usurped = False
        # The engine identity of the agent that took it ("" unknown).
        self._usurper = ""
        # Self-fencing: seconds without a refresh before ``on_fence`` runs.
        self.fence_after = fence_after
        self.on_fence = on_fence
        # ``clock.now()`` of the last refresh (or acquisition); 0: never held.
        self.last_refresh = 0.0
        # Set while fenced, until a refresh succeeds again.
        self.fenced = False

    def _where(self) -> str:
        return f"Lease {self.zone}/{self.name}"

    async def identity(self) -> str:
        """``docker:<engine ID>``, or "" while Docker does not say (then: no takeover)."""
        if not self._identity:
            try:
                engine_id = await self._identify()
            except Exception as exc:  # the engine's own errors; a takeover just waits
                log.warning("cannot identify the Docker engine (%s): an existing %s will be "
                            "waited for, not taken over", exc, self._where())
                return ""
            self._identity = f"docker:{engine_id}" if engine_id else ""
        return self._identity

    def _object(self, lease_id: int) -> object_pb2.Object:
        obj = objects.new("Lease", self.name, zone=self.zone)
        obj.lease.spec.holder = self.node
        obj.lease.spec.lease_id = lease_id
        obj.lease.spec.ttl_seconds = self.ttl
        if self._identity:
            obj.metadata.annotations[IDENTITY_ANNOTATION] = self._identity
        return obj

    async def run(self) -> None:
        """Hold the Lease until cancelled, taking it again whenever it is lost."""
        watch = None
        if self.on_fence is not None and self.fence_after is not None:
            watch = asyncio.create_task(self._fence_watch(), name="fence-watch")
        try:
            await self._hold()
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch

    async def _fence_watch(self) -> None:
        """Fence once the lease has gone ``fence_after`` seconds without a refresh."""
        assert self.on_fence is not None and self.fence_after is not None
        while True:
            await self.clock.sleep(min(0.25, self.fence_after / 4))
            if not self.last_refresh or await self._taken_on_this_engine():
                continue
            silent = self.clock.now() - self.last_refresh
            if silent < self.fence_after:
                self.fenced = False
            elif not self.fenced:
                self.fenced = True
                log.error("%s: no refresh for %.1fs; stopping this node's containers before "
                          "the lease expires (they are replaced elsewhere)", self._where(),
                          silent)
                try:
                    await self.on_fence()
                except Exception:
                    log.exception("%s: fencing failed", self._where())

    async def _taken_on_this_engine(self) -> bool:
        """A newer agent on this very Docker engine took the node over: the containers
        are in its hands now, and stopping them would be wrong."""
        return self._usurped and bool(self._usurper) and self._usurper == await self.identity()

    async def _hold(self) -> None:
        while True:
            self.lease_id = await self._acquire()
            self.last_refresh = self.clock.now()
            self._usurped = False
            self.generation += 1
            self.held.set()
            self.acquired.set()
            log.info("%s held (etcd lease %x, TTL %ds)", self._where(), self.lease_id, self.ttl)
            try:
                await self._keep(self.lease_id)
            finally:
                self.held.clear()
            log.warning("%s lost; taking it again", self._where())

    async def _acquire(self) -> int:
        backoff = 0.5
        last_warning = 0.0
        while True:
            try:
                await self.identity()
                lease_id, _ = await self.client.grant_lease(self.ttl)
                self._granted.add(lease_id)
                if await self._bind(lease_id):
                    return lease_id
                # Someone else's Lease is in the way: let ours go and wait for theirs.
                with contextlib.suppress(errors.DoraError):
                    await self.client.revoke_lease(lease_id)
                existing = await self._existing()
                if existing is None:
                    continue
                if time.monotonic() - last_warning > 60:
                    last_warning = time.monotonic()
                    log.warning(
                        "%s is held by %r on %s (etcd lease %x); this agent is on %s: waiting "
                        "for it to expire (within %ds if that agent is dead; if it never "
                        "does, another agent runs with --node-name %s)",
                        self._where(), existing.lease.spec.holder,
                        existing.metadata.annotations.get(IDENTITY_ANNOTATION) or "an "
                        "unknown engine", existing.lease.spec.lease_id,
                        self._identity or "an unidentified engine",
                        existing.lease.spec.ttl_seconds or self.ttl, self.node,
                    )
                await self._wait_gone(existing)
                backoff = 0.5
            except errors.DoraError as exc:
                log.warning("cannot take %s yet (retrying in %.1fs): %s",
                            self._where(), backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _bind(self, lease_id: int) -> bool:
        """Create the Lease on ``lease_id``, or move it there when it is ours to move."""
        for _ in range(8):
            try:
                await self.client.apply(self._object(lease_id), create_only=True)
                return True
            except errors.AlreadyExists:
                pass
            existing = await self._existing()
            if existing is None:
                continue
            spec = existing.lease.spec
            ours = spec.lease_id in self._granted
            previous_run = (
                not self._usurped and bool(self._identity) and spec.holder == self.node
                and existing.metadata.annotations.get(IDENTITY_ANNOTATION) == self._identity
            )
            if not (ours or previous_run):
                return False
            if not ours:
                log.info("%s: taking it over from a previous run of this agent on the same "
                         "Docker engine (etcd lease %x)", self._where(), spec.lease_id)
            moved = self._object(lease_id)
            moved.metadata.resource_version = existing.metadata.resource_version
            try:
                await self.client.apply(moved)
                return True
            except (errors.Conflict, errors.NotFound):
                continue
        return False

    async def _existing(self) -> object_pb2.Object | None:
        try:
            return await self.client.get("Lease", self.name, zone=self.zone)
        except errors.NotFound:
            return None

    async def _wait_gone(self, existing: object_pb2.Object) -> None:
        """Until the Lease is deleted (or at most a TTL: the caller looks again)."""
        wait = max(existing.lease.spec.ttl_seconds, self.ttl, 2)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                stream = self.client.watch(
                    "Lease", zone=self.zone,
                    resource_version=existing.metadata.resource_version,
                )
                try:
                    async for event in stream:
                        if (event.object.metadata.name == self.name
                                and event.type == WatchEvent.DELETED):
                            return
                finally:
                    await aclose(stream)

    async def _keep(self, lease_id: int) -> None:
        """Refresh ``lease_id`` until it is lost; return then."""
        every = self.ttl / 3
        last_refresh = last_check = time.monotonic()
        while True:
            stream = self.client.keep_lease_alive(lease_id, every=every)
            try:
                while True:
                    left_of_ttl = last_refresh + self.ttl - time.monotonic()
                    if left_of_ttl <= 0:
                        log.warning("%s: no refresh for %ds (the TTL)", self._where(), self.ttl)
                        return
                    try:
                        async with asyncio.timeout(left_of_ttl):
                            remaining = await anext(stream)
                    except TimeoutError:
                        continue
                    except StopAsyncIteration:
                        break
                    if remaining <= 0:
                        log.warning("%s: etcd lease %x expired", self._where(), lease_id)
                        return
                    last_refresh = time.monotonic()
                    self.last_refresh = self.clock.now()
                    if last_refresh - last_check >= self.ttl:
                        last_check = last_refresh
                        if not await self._still_ours(lease_id):
                            return
            except errors.DoraError as exc:
                log.warning("%s: keep-alive failed: %s", self._where(), exc)
            finally:
                await aclose(stream)
            await asyncio.sleep(min(1.0, every))

    async def _still_ours(self, lease_id: int) -> bool:
        try:
            existing = await self._existing()
        except errors.DoraError as exc:
            log.debug("%s: cannot read it back: %s", self._where(), exc)
            return True
        if existing is None:
            log.warning("%s was deleted while held; creating it again", self._where())
            try:
                await self.client.apply(self._object(lease_id), create_only=True)
            except errors.AlreadyExists:
                return await self._still_ours(lease_id)
            except errors.DoraError as exc:
                log.warning("%s: cannot create it again: %s", self._where(), exc)
            return True
        if existing.lease.spec.lease_id != lease_id:
            self._usurped = True
            self._usurper = existing.metadata.annotations.get(IDENTITY_ANNOTATION, "")
            log.error("%s was taken over (now etcd lease %x on %s, not ours %x): another "
                      "agent runs for node %s; this one stops reconciling until that one's "
                      "lease expires", self._where(), existing.lease.spec.lease_id,
                      existing.metadata.annotations.get(IDENTITY_ANNOTATION) or "?",
                      lease_id, self.node)
            return False
        return True
