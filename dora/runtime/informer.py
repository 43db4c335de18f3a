"""Informers: keep a ``Store`` equal to the cluster's objects of one kind.

An informer lists its kind (in one zone), then watches from the list's
resourceVersion, so it sees every change exactly once and in order. It
relists when the watch says the version is gone (compacted), and after any
other failure, with backoff. Watches go silent in real networks (kopf's most
reported bug), so the informer asks for bookmarks and, when nothing at all
arrives for ``stall_timeout`` seconds, reopens the watch from its last version.
Every ``resync`` seconds it lists again and watches from the new list: a cache
that diverged from the cluster (an event lost by a bug, an object that is gone
but still cached, on which a controller would spin) is repaired, each
difference dispatched as the change it is and logged. Then it hands every cached
object to its handlers again: a reconcile that was dropped on the floor gets
another chance (level-triggered).

An informer may follow only the objects a label selector matches (the node agent
follows the Containers bound to its node). An object whose labels stop matching
(a Container unbound) leaves the store as if deleted: the apiserver sends its
last matching change, and nothing after it.

Handlers receive a ``Delta`` and must not block: they enqueue keys.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import anyio

from dora.api import errors, labels, objects
from dora.api.client import resume_point
from dora.api.v1 import object_pb2, resources_pb2
from dora.runtime.cache import Delta, Store
from dora.runtime.clock import Clock

log = logging.getLogger(__name__)

WatchEvent = resources_pb2.WatchEvent
Handler = Callable[[Delta], None]


class ListWatcher(Protocol):
    """What an informer needs of ``dora.api.client.Client``."""

    async def list(
        self, kind: str, *, zone: str = "", workspace: str = "", label_selector: str = "",
        page_size: int = 500,
    ) -> tuple[list[object_pb2.Object], int]: ...

    def watch(
        self, kind: str, *, zone: str = "", workspace: str = "", label_selector: str = "",
        resource_version: int = 0, resume: bool = True, bookmarks: bool = False,
        resume_index: int = 0,
    ) -> AsyncIterator[WatchEvent]: ...


class Informer:
    def __init__(
        self,
        *,
        client: ListWatcher,
        store: Store,
        clock: Clock,
        zone: str = "",
        label_selector: str = "",
        resync: float = 300.0,
        stall_timeout: float = 60.0,
        retry: float = 0.5,
        max_retry: float = 10.0,
    ) -> None:
        self.client = client
        self.store = store
        self.kind = store.kind
        self.zone = zone
        self.label_selector = label_selector
        self._selects = labels.parse(label_selector).matches
        self.clock = clock
        self.resync = resync
        self.stall_timeout = stall_timeout
        self.retry = retry
        self.max_retry = max_retry
        self.synced = anyio.Event()
        self.version = 0
        # How many events of ``version`` came (0: all of them): where a reopened
        # watch resumes inside a revision that changed several objects.
        self.resume_index = 0
        self.relists = 0
        # Objects a resync's list found the cache wrong about, since the start.
        self.repaired = 0
        self._handlers: list[Handler] = []
        self._resync_due = False
        self._watch_scope: anyio.CancelScope | None = None

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def run(self) -> None:
        async with anyio.create_task_group() as group:
            if self.resync > 0:
                group.start_soon(self._resync_loop)
            await self._list_and_watch()

    async def _list_and_watch(self) -> None:
        delay = self.retry
        while True:
            try:
                await self._list()
                delay = self.retry
                with anyio.CancelScope() as scope:
                    self._watch_scope = scope
                    await self._watch()
                # Cancelled by the resync loop: list again, then watch from there.
            except errors.Gone:
                log.info("%s watch: version %d is gone; listing again", self.kind, self.version)
            except errors.DoraError as exc:
                log.warning("%s informer: %s; listing again in %.1fs", self.kind, exc, delay)
                await self.clock.sleep(delay)
                delay = min(self.max_retry, delay * 2)

    async def _list(self) -> None:
        items, version = await self.client.list(self.kind, zone=self.zone,
                                                label_selector=self.label_selector)
        self.relists += 1
        deltas = self.store.replace(items)
        resync, self._resync_due = self._resync_due, False
        if resync and deltas:
            self.repaired += len(deltas)
            log.warning("%s resync: the cache differed from the cluster on %d object(s) "
                        "(%s); repaired", self.kind, len(deltas),
                        ", ".join(sorted({d.object.metadata.name for d in deltas})[:5]))
        for delta in deltas:
            self._dispatch(delta)
        self.version, self.resume_index = version, 0
        self.synced.set()
        if resync:
            changed = {objects.ref_of(d.object) for d in deltas}
            for obj in self.store:
                if objects.ref_of(obj) not in changed:
                    self._dispatch(Delta(obj, obj))
        log.debug("%s: listed %d objects at version %d", self.kind, len(items), version)

    async def _watch(self) -> None:
        """Follow changes from ``self.version``; returns only by raising."""
        while True:
            stream = self.client.watch(
                self.kind, zone=self.zone, label_selector=self.label_selector,
                resource_version=self.version,
                resume_index=self.resume_index, bookmarks=True,
            )
            try:
                while True:
                    event: WatchEvent | None = None
                    with anyio.move_on_after(self.stall_timeout):
                        event = await anext(stream)
                    if event is None:
                        log.warning("%s watch: silent for %.0fs; reopening from version %d",
                                    self.kind, self.stall_timeout, self.version)
                        break
                    self._handle(event)
            except StopAsyncIteration:
                log.info("%s watch ended; reopening from version %d", self.kind, self.version)
            finally:
                await aclose(stream)

    def _handle(self, event: WatchEvent) -> None:
        obj = event.object
        self.version, self.resume_index = resume_point(self.version, self.resume_index, event)
        delta: Delta | None = None
        if event.type == WatchEvent.BOOKMARK:
            return
        if event.type == WatchEvent.DELETED or not self._selects(obj.metadata.labels):
            if self.store.remove(obj) is not None:
                delta = Delta(obj, None)
        else:
            delta = self.store.upsert(obj)
        if delta is not None:
            self._dispatch(delta)

    def _dispatch(self, delta: Delta) -> None:
        for handler in self._handlers:
            try:
                handler(delta)
            except Exception:
                log.exception("%s handler failed", self.kind)

    async def _resync_loop(self) -> None:
        await self.synced.wait()
        while True:
            await self.clock.sleep(self.resync)
            # The watch loop lists again (repairing the cache) and dispatches
            # every object; a list already under way does it too.
            self._resync_due = True
            if self._watch_scope is not None:
                self._watch_scope.cancel()


async def aclose(stream: AsyncIterator[WatchEvent]) -> None:
    """Close a watch stream (an async generator), even while being cancelled."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await close()
