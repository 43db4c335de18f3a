"""Leader election on a Lease object bound to an etcd lease.

Exactly one replica per zone reconciles. To lead, a replica grants an etcd
lease (TTL ``ttl``) and creates the Lease ``controllers`` in its zone with
``create_only``, bound to that etcd lease: etcd itself makes the create atomic
and deletes the object when the holder stops keeping the lease alive. A standby
watches the Lease and campaigns again as soon as it is deleted, so a killed
leader is replaced within the TTL.

The leader keeps its lease alive every ``ttl/4`` seconds and checks that the
Lease object is still its own. It steps down, cancelling everything it runs,
when the keep-alive reports the lease gone (TTL 0), when the object is gone or
held by someone else, or when no keep-alive succeeded for ``2/3`` of the TTL:
it stops before the lease can expire and a standby take over, so two replicas
never act at once on purpose. A replica that stepped down campaigns again. On a
graceful stop the leader revokes its lease, so the standby takes over at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import anyio

from dora.api import errors, kinds, objects
from dora.api.v1 import object_pb2, resources_pb2
from dora.runtime.clock import Clock
from dora.runtime.informer import aclose

log = logging.getLogger(__name__)


class LeaseClient(Protocol):
    """What leader election needs of ``dora.api.client.Client``."""

    async def grant_lease(self, ttl_seconds: int) -> tuple[int, int]: ...

    def keep_lease_alive(self, lease_id: int, *, every: float) -> AsyncIterator[int]: ...

    async def revoke_lease(self, lease_id: int) -> None: ...

    async def apply(
        self, obj: object_pb2.Object, *, dry_run: bool = False, create_only: bool = False
    ) -> tuple[object_pb2.Object, int]: ...

    async def get(self, kind: str, name: str, *, zone: str = "",
                  workspace: str = "") -> object_pb2.Object: ...

    def watch(
        self, kind: str, *, zone: str = "", workspace: str = "", label_selector: str = "",
        resource_version: int = 0, resume: bool = True, bookmarks: bool = False,
    ) -> AsyncIterator[resources_pb2.WatchEvent]: ...


class LeaderElector:
    def __init__(
        self,
        *,
        client: LeaseClient,
        zone: str,
        identity: str,
        clock: Clock,
        name: str = "controllers",
        ttl: int = 10,
    ) -> None:
        self.client = client
        self.zone = zone
        self.identity = identity
        self.clock = clock
        self.name = name
        self.ttl = ttl
        self.leading = False
        self.terms = 0

    @property
    def renew_deadline(self) -> float:
        return self.ttl * 2 / 3

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Campaign, and run ``lead`` while leading; again after losing. Returns when
        ``lead`` does."""
        while True:
            lease_id = await self.campaign()
            if not await self._lead(lease_id, lead):
                return
            log.warning("%s lost the lease %s in zone %s; campaigning again",
                        self.identity, self.name, self.zone)

    async def campaign(self) -> int:
        """Wait until this replica holds the Lease; the etcd lease it is bound to."""
        while True:
            lease_id, _ = await self._retrying(lambda: self.client.grant_lease(self.ttl))
            lease = objects.new(kinds.LEASE, self.name, zone=self.zone)
            lease.lease.spec.holder = self.identity
            lease.lease.spec.lease_id = lease_id
            lease.lease.spec.ttl_seconds = self.ttl
            try:
                await self.client.apply(lease, create_only=True)
            except errors.AlreadyExists:
                await self._revoke(lease_id)
            except errors.DoraError as exc:
                await self._revoke(lease_id)
                log.warning("campaign for %s failed: %s", self.name, exc)
                await self.clock.sleep(1.0)
                continue
            else:
                self.terms += 1
                log.info("%s leads zone %s (lease %s, ttl %ds)", self.identity, self.zone,
                         self.name, self.ttl)
                return lease_id
            await self._wait_for_release()

    async def _lead(self, lease_id: int, lead: Callable[[], Awaitable[None]]) -> bool:
        """Run ``lead`` while holding ``lease_id``; True when leadership was lost."""
        lost = False
        self.leading = True
        try:
            async with anyio.create_task_group() as group:

                async def hold() -> None:
                    nonlocal lost
                    await self.hold(lease_id)
                    lost = True
                    group.cancel_scope.cancel()

                group.start_soon(hold)
                await lead()
                group.cancel_scope.cancel()
        finally:
            self.leading = False
            if not lost:
                await self._revoke(lease_id)
        return lost

    async def hold(self, lease_id: int) -> None:
        """Keep ``lease_id`` alive; returns when leadership is lost."""
        every = max(0.2, self.ttl / 4)
        last_ok = self.clock.now()
        async with anyio.create_task_group() as group:

            async def keep_alive() -> None:
                nonlocal last_ok
                while True:
                    try:
                        async for left in self.client.keep_lease_alive(lease_id, every=every):
                            if left <= 0:
                                log.warning("lease %s: etcd lease %d expired", self.name,
                                            lease_id)
                                group.cancel_scope.cancel()
                                return
                            last_ok = self.clock.now()
                    except errors.DoraError as exc:
                        log.warning("lease %s keep-alive: %s", self.name, exc)
                    await self.clock.sleep(min(every, 0.5))

            async def watchdog() -> None:
                while True:
                    await self.clock.sleep(every)
                    if self.clock.now() - last_ok > self.renew_deadline:
                        log.warning("lease %s: no keep-alive for %.1fs; stepping down",
                                    self.name, self.clock.now() - last_ok)
                        break
                    if not await self._still_mine(lease_id):
                        break
                group.cancel_scope.cancel()

            group.start_soon(keep_alive)
            group.start_soon(watchdog)

    async def _still_mine(self, lease_id: int) -> bool:
        try:
            current = await self.client.get(kinds.LEASE, self.name, zone=self.zone)
        except errors.NotFound:
            log.warning("lease %s was deleted; stepping down", self.name)
            return False
        except errors.DoraError:
            return True  # the deadline decides when the apiserver is unreachable
        spec = current.lease.spec
        if spec.lease_id != lease_id or spec.holder != self.identity:
            log.warning("lease %s is held by %s now; stepping down", self.name, spec.holder)
            return False
        return True

    async def _wait_for_release(self) -> None:
        """Return when the Lease is gone (or might be: at most one TTL later)."""
        try:
            current = await self.client.get(kinds.LEASE, self.name, zone=self.zone)
        except errors.NotFound:
            return
        except errors.DoraError:
            await self.clock.sleep(1.0)
            return
        log.info("%s is standby; %s holds lease %s", self.identity,
                 current.lease.spec.holder, self.name)
        stream = self.client.watch(kinds.LEASE, zone=self.zone,
                                   resource_version=current.metadata.resource_version)
        try:
            with anyio.move_on_after(self.ttl):
                async for event in stream:
                    if (event.object.metadata.name == self.name
                            and event.type == resources_pb2.WatchEvent.DELETED):
                        return
        except errors.DoraError as exc:
            log.info("watching lease %s: %s", self.name, exc)
        finally:
            await aclose(stream)

    async def _revoke(self, lease_id: int) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            try:
                await self.client.revoke_lease(lease_id)
            except Exception as exc:  # best effort: the lease expires anyway
                log.debug("revoking lease %d: %s", lease_id, exc)

    async def _retrying(self, call: Callable[[], Awaitable[tuple[int, int]]]) -> tuple[int, int]:
        delay = 0.2
        while True:
            try:
                return await call()
            except errors.DoraError as exc:
                log.warning("lease %s: %s; retrying in %.1fs", self.name, exc, delay)
                await self.clock.sleep(delay)
                delay = min(5.0, delay * 2)
