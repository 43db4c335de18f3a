"""The watch cache: one etcd watch per kind, fanned out to every client watcher.

A ``KindCache`` lists its kind once, then follows a single etcd watch on the
kind's prefix. It keeps

- the current objects, each with its ADDED event already serialized, so the
  initial state of a new watcher costs no serialization;
- a window of the most recent events, each serialized once for all watchers
  (Kubernetes KEP-1152), so a watcher that resumes from a version inside the
  window replays from memory with no gap and no duplicate;
- its revision: everything up to it has been seen. Progress marks requested from
  etcd move it on even when the kind is idle, and watchers get it as bookmarks.

Each object is serialized once, when its event arrives: the event sent to
watchers is that serialization framed as a ``WatchEvent``, and a Get or List
served from the cache sends it as it is (``object_bytes``, ``message_field``).

One etcd transaction can change several objects of a kind: their events share
one revision, so a revision alone cannot say where a watcher stopped. Each event
carries its position in its revision (``revision_index``) and a watcher resumes
from a position, (revision, index): every event after it is sent, the rest of a
half-received revision included, and nothing before it twice.

A version older than the window is ``errors.Gone``: the client lists again
(Kubernetes' "too old resource version"). A version newer than the cluster's,
once a short wait has not brought it, is ``errors.Invalid`` ("too large resource
version"): it names a revision that does not exist, and no bookmark may claim
it. A watcher that cannot keep up loses its stream with ``errors.Unavailable``
and resumes from its last position.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from dora.api import errors, kinds, labels
from dora.api.v1 import object_pb2, resources_pb2
from dora.apiserver import registry
from dora.apiserver.storage import Etcd, Event

log = logging.getLogger(__name__)

EventType = resources_pb2.WatchEvent.Type


# A position in the event stream: (revision, index of the event in its revision).
# (revision, ALL) is the end of a revision: every event of it is behind.
Position = tuple[int, int]
ALL = sys.maxsize
# How long a read or watch at a version the cache has not reached waits for it
# (Kubernetes waits 3 s too) before the version is called too large.
FUTURE_WAIT = 3.0
# Snapshots of a kind kept for the next pages of Lists served from the cache.
SNAPSHOTS = 4


@dataclass(frozen=True, slots=True)
class CachedEvent:
    revision: int
    # The event's position among the events of its revision (one transaction
    # may change several objects of the kind).
    index: int
    key: bytes
    zone: str
    workspace: str
    labels: dict[str, str]
    prev_labels: dict[str, str] | None
    payload: bytes
    # Shared by every reader: never mutate it.
    object: object_pb2.Object
    # ``object`` serialized (``payload`` ends with it).
    object_bytes: bytes


def varint(value: int) -> bytes:
    """A non-negative integer in protobuf's base-128 varint encoding."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def message_field(number: int, data: bytes) -> bytes:
    """Field ``number`` holding the serialized message ``data``, in protobuf's wire
    format: a serialized message is the concatenation of its fields, so a message
    can be assembled from pieces already serialized without parsing them again."""
    return varint(number << 3 | 2) + varint(len(data)) + data


# ``WatchEvent.type`` (field 1, a varint) of each event type, as serialized.
_TYPE_FIELD = {t: b"\x08" + varint(t) for t in EventType.values() if t}
_OBJECT_FIELD = 2  # WatchEvent.object
_INDEX_TAG = b"\x18"  # WatchEvent.revision_index: field 3, a varint


def _everywhere(zone: str, workspace: str, name: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Filter:
    zone: str = ""
    workspace: str = ""
    selector: labels.Selector = labels.EVERYTHING
    # Whether the watcher may see the object of this zone, workspace and name.
    permits: Callable[[str, str, str], bool] = _everywhere
    # For a node (``noderestriction.visible``): whether it may see the object of
    # this name, labels and previous labels.
    visible: Callable[[str, Mapping[str, str], Mapping[str, str] | None], bool] | None = None

    def everything(self) -> bool:
        """Whether every event matches (no need to ask for each)."""
        return (not self.zone and not self.workspace and self.permits is _everywhere
                and not self.selector and self.visible is None)

    def matches(self, event: CachedEvent) -> bool:
        if self.zone and event.zone != self.zone:
            return False
        if self.workspace and event.workspace != self.workspace:
            return False
        if not self.permits(event.zone, event.workspace, event.object.metadata.name):
            return False
        if self.visible is not None and not self.visible(
                event.object.metadata.name, event.labels, event.prev_labels):
            return False
        if not self.selector:
            return True
        return self.selector.matches(event.labels) or (
            event.prev_labels is not None and self.selector.matches(event.prev_labels)
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A kind's objects at one revision, in key order: what the pages of one List
    are cut from, so paging through n objects costs n, not n^2/page (etcd counts
    the whole range again for each page)."""

    revision: int
    keys: list[bytes]
    entries: list[CachedEvent]

    def after(self, start: bytes) -> int:
        """The position of the first object at or after ``start``."""
        return bisect.bisect_left(self.keys, start)


class _Subscriber:
    """One client watcher's events not yet sent, and how to wake it.

    Fan-out is the apiserver's hottest path (a write to a thousand watchers is a
    thousand of these), so an event costs a deque append and, when the watcher is
    waiting, setting one future; a watcher woken for several events sends them
    one after another without waiting again. Its bookmark timer is armed once and
    re-armed only when it fires (every ``bookmark_every`` while the watcher is
    busy), not set and cancelled around every event.
    """

    __slots__ = ("_loop", "_match", "bookmark_due", "bookmark_every", "capacity", "error",
                 "idle_since", "pending", "timer", "waiter")

    def __init__(self, *, filter: Filter, capacity: int, bookmark_every: float) -> None:
        self._match = None if filter.everything() else filter.matches
        self.pending: collections.deque[CachedEvent] = collections.deque()
        # Sent once the pending events are: the watch ends with it.
        self.error: errors.DoraError | None = None
        self.capacity = capacity
        self.waiter: asyncio.Future[None] | None = None
        self.bookmark_due = False
        self._loop = asyncio.get_running_loop()
        self.idle_since = self._loop.time()
        self.bookmark_every = bookmark_every
        self.timer = self._loop.call_at(self.idle_since + bookmark_every, self._tick)

    def offer(self, event: CachedEvent) -> None:
        if self.error is not None:
            return
        if self._match is not None and not self._match(event):
            return
        if len(self.pending) >= self.capacity:
            self.pending.clear()
            self.fail(errors.Unavailable(
                "watcher too slow; resume from your last resourceVersion"))
            return
        self.pending.append(event)
        self._wake()

    def fail(self, error: errors.DoraError) -> None:
        """End the watch with ``error`` after the events already pending."""
        if self.error is None:
            self.error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _tick(self) -> None:
        """The bookmark timer: a bookmark is due once the watcher has waited
        ``bookmark_every`` for an event."""
        now = self._loop.time()
        due = self.idle_since + self.bookmark_every
        if due - now > 0.01:  # it has sent something since: due later
            self.timer = self._loop.call_at(due, self._tick)
            return
        if self.waiter is not None:
            self.bookmark_due = True
            self._wake()
        self.timer = self._loop.call_at(now + self.bookmark_every, self._tick)

    async def wait(self) -> None:
        """Until an event or the error is offered, or a bookmark is due."""
        self.idle_since = self._loop.time()
        self.waiter = self._loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.timer.cancel()


class KindCache:
    def __init__(
        self,
        *,
        kind: kinds.Kind,
        etcd: Etcd,
        window: int = 10_000,
        progress_every: float = 1.0,
        subscriber_capacity: int = 10_000,
    ) -> None:
        self.kind = kind
        self._etcd = etcd
        self._window: collections.deque[CachedEvent] = collections.deque(maxlen=window)
        # Every position up to this one is behind the window: a watcher resuming
        # from an older one missed events the cache no longer has.
        self._window_start: Position = (0, ALL)
        # The revision of the last event applied and how many events it had so far.
        self._last_revision = 0
        self._events_in_revision = 0
        self._objects: dict[bytes, CachedEvent] = {}
        # Their keys in order, kept as objects come and go (a List's first page is
        # found by bisection, without sorting the kind).
        self._keys: list[bytes] = []
        # (label, value) -> keys of the cached objects with that label value.
        self._by_label: dict[tuple[str, str], set[bytes]] = {}
        # (zone, workspace) -> how many cached objects are there (admission's quota).
        self._per_scope: collections.Counter[tuple[str, str]] = collections.Counter()
        self._subscribers: set[_Subscriber] = set()
        # Moves on every change of the cached objects (a relist included), so a
        # reader can tell that what it derived from them still holds.
        self.changes = 0
        # The current objects in key order (copied on demand, for ``changes``), and
        # the recent ones that the next pages of Lists read (revision -> snapshot).
        self._sorted: tuple[int, Snapshot] | None = None
        self._snapshots: collections.OrderedDict[int, Snapshot] = collections.OrderedDict()
        # Set to ask etcd for a progress mark now (a consistent read waiting on it).
        self._progress_now = asyncio.Event()
        self._progress_every = progress_every
        self._capacity = subscriber_capacity
        self.revision = 0
        self.ready = asyncio.Event()
        self._advanced = asyncio.Event()

    async def run(self) -> None:
        """List, then follow the kind's etcd watch; relist if etcd compacted past us."""
        prefix = registry.prefix(self.kind)
        while True:
            await self._load(prefix)
            try:
                async for batch in self._etcd.watch(
                    prefix, start_revision=self.revision + 1, progress_every=self._progress_every,
                    progress_now=self._progress_now,
                ):
                    for event in batch.events:
                        self._apply(event)
                    if not batch.events:
                        self._advance(batch.revision)
            except errors.Gone:
                log.warning("%s cache fell behind etcd compaction; relisting", self.kind.name)
                self._fail_all(errors.Gone("the watch cache was reset; list again"))

    async def _load(self, prefix: bytes) -> None:
        while True:
            try:
                listing = await self._etcd.range(prefix)
                break
            except errors.Unavailable as exc:
                log.warning("listing %s failed (%s); retrying", self.kind.plural, exc)
                await asyncio.sleep(1.0)
        self._objects = {}
        self._keys = []
        self._by_label = {}
        self._per_scope = collections.Counter()
        self._snapshots.clear()
        self.changes += 1
        for kv in listing.kvs:
            obj = registry.decode(kv)
            self._store(kv.key, self._cached(EventType.ADDED, obj, kv.key, kv.mod_revision))
        self._advance(listing.revision)
        self._window.clear()
        self._window_start = (listing.revision, ALL)
        self._last_revision, self._events_in_revision = listing.revision, 0
        self.ready.set()

    def _apply(self, event: Event) -> None:
        self.changes += 1
        if event.deleted and event.prev is None:
            return
        revision = event.kv.mod_revision
        if revision != self._last_revision:
            self._last_revision, self._events_in_revision = revision, 0
        index = self._events_in_revision
        self._events_in_revision += 1
        if event.deleted:
            assert event.prev is not None
            obj = registry.decode(event.prev)
            obj.metadata.resource_version = event.kv.mod_revision
            cached = self._cached(EventType.DELETED, obj, event.key, event.kv.mod_revision,
                                  index=index)
            self._store(event.key, None)
        else:
            obj = registry.decode(event.kv)
            added = event.kv.create_revision == event.kv.mod_revision
            prev_labels = None
            if event.prev is not None:
                previous = self._objects.get(event.key)
                if previous is not None and previous.revision == event.prev.mod_revision:
                    prev_labels = previous.labels  # that version, parsed when it came
                else:
                    prev_labels = dict(registry.decode(event.prev).metadata.labels)
            cached = self._cached(
                EventType.ADDED if added else EventType.MODIFIED, obj, event.key,
                event.kv.mod_revision, prev_labels=prev_labels, index=index,
            )
            self._store(event.key, (
                cached if added and not index else self._cached(
                    EventType.ADDED, obj, event.key, event.kv.mod_revision,
                    object_bytes=cached.object_bytes)
            ))
        if len(self._window) == self._window.maxlen:
            oldest = self._window[0]
            self._window_start = (oldest.revision, oldest.index)
        self._window.append(cached)
        self._advance(cached.revision)
        for subscriber in list(self._subscribers):
            subscriber.offer(cached)

    def _store(self, key: bytes, entry: CachedEvent | None) -> None:
        """Keep ``entry`` as the object at ``key`` (None: it is gone), and the label
        index with it."""
        old = self._objects.pop(key, None)
        if old is None and entry is not None:
            bisect.insort(self._keys, key)
        elif old is not None and entry is None:
            del self._keys[bisect.bisect_left(self._keys, key)]
        if old is not None:
            self._per_scope[(old.zone, old.workspace)] -= 1
            for pair in old.labels.items():
                keys = self._by_label.get(pair)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_label[pair]
        if entry is not None:
            self._objects[key] = entry
            self._per_scope[(entry.zone, entry.workspace)] += 1
            for pair in entry.labels.items():
                self._by_label.setdefault(pair, set()).add(key)

    def _cached(
        self,
        type: EventType.ValueType,
        obj: object_pb2.Object,
        key: bytes,
        revision: int,
        *,
        prev_labels: dict[str, str] | None = None,
        object_bytes: bytes | None = None,
        index: int = 0,
    ) -> CachedEvent:
        if object_bytes is None:
            object_bytes = obj.SerializeToString()
        # == WatchEvent(type=type, object=obj, revision_index=index).SerializeToString(),
        # without copying obj.
        payload = _TYPE_FIELD[type] + message_field(_OBJECT_FIELD, object_bytes)
        if index:
            payload += _INDEX_TAG + varint(index)
        return CachedEvent(
            revision=revision, index=index, key=key, zone=obj.metadata.zone,
            workspace=obj.metadata.workspace, labels=dict(obj.metadata.labels),
            prev_labels=prev_labels, payload=payload, object=obj, object_bytes=object_bytes,
        )

    def _advance(self, revision: int) -> None:
        if revision > self.revision:
            self.revision = revision
            self._advanced.set()
            self._advanced = asyncio.Event()

    async def check_version(self, revision: int) -> None:
        """Wait (at most ``FUTURE_WAIT``) until the cache has seen ``revision``; raise
        ``errors.Invalid`` when the cluster has not reached it ("too large resource
        version"), ``errors.Unavailable`` when only the cache lags."""
        if await self.caught_up(revision, within=FUTURE_WAIT):
            return
        current = await self._etcd.revision()
        if revision > current:
            raise too_large(revision, current)
        raise errors.Unavailable(
            f"the watch cache has not reached resourceVersion {revision} yet; retry")

    async def caught_up(self, revision: int, *, within: float = 1.0) -> bool:
        """Wait until the cache has seen revision ``revision``; False if it did not in time."""
        if self.revision >= revision and self.ready.is_set():
            return True  # the usual case, without arming a timeout
        try:
            async with asyncio.timeout(within):
                await self.ready.wait()
                while self.revision < revision:
                    await self._advanced.wait()
        except TimeoutError:
            return False
        return True

    async def consistent(self, revision: int, *, within: float) -> bool:
        """Wait until the cache has seen ``revision`` (etcd's current one, read by a
        consistent List), asking etcd for a progress mark so that an idle kind
        catches up at once; False if it did not within ``within`` seconds."""
        if self.revision >= revision and self.ready.is_set():
            return True
        self._progress_now.set()
        return await self.caught_up(revision, within=within)

    def snapshot(self) -> Snapshot:
        """The current objects in key order, kept for the next pages of a List at
        this revision (``snapshot_at``). Copied once per change of the kind."""
        current = self._sorted
        if current is None or current[0] != self.changes:
            keys = list(self._keys)
            objects = self._objects
            current = (self.changes, Snapshot(self.revision, keys, [objects[k] for k in keys]))
            self._sorted = current
        snapshot = current[1]
        if snapshot.revision != self.revision:  # nothing changed since: the same objects
            snapshot = Snapshot(self.revision, snapshot.keys, snapshot.entries)
            self._sorted = (self.changes, snapshot)
        return snapshot

    def keep(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` for the next pages of a List (the last ``SNAPSHOTS``)."""
        self._snapshots[snapshot.revision] = snapshot
        self._snapshots.move_to_end(snapshot.revision)
        while len(self._snapshots) > SNAPSHOTS:
            self._snapshots.popitem(last=False)

    def snapshot_at(self, revision: int) -> Snapshot | None:
        """The kept snapshot at ``revision``, or the current objects if the kind has
        not changed since ``revision``; None otherwise (read etcd at it)."""
        kept = self._snapshots.get(revision)
        if kept is not None:
            return kept
        if self._last_revision <= revision <= self.revision and self.ready.is_set():
            return self.snapshot()
        return None

    def items(self) -> list[object_pb2.Object]:
        """Every cached object, in key order (shared: copy before changing them)."""
        return [self._objects[key].object for key in self._keys]

    def select(self, selector: labels.Selector) -> list[CachedEvent]:
        """The cached objects ``selector`` matches, in key order. A requirement that a
        label have one of a few values is answered from the label index, so a narrow
        selector (the scheduler's ``dora.io/placement=<node>``) costs what it finds,
        not a pass over the whole kind."""
        candidates: set[bytes] | None = None
        for requirement in selector.requirements:
            if requirement.op != "in":
                continue
            found: set[bytes] = set()
            for value in requirement.values:
                found |= self._by_label.get((requirement.key, value), set())
            if candidates is None or len(found) < len(candidates):
                candidates = found
        if candidates is None:
            objects = self._objects
            return [entry for entry in (objects[key] for key in self._keys)
                    if selector.matches(entry.labels)]
        return [entry for entry in (self._objects[key] for key in sorted(candidates))
                if selector.matches(entry.labels)]

    def current(self) -> tuple[list[bytes], Callable[[int], CachedEvent]]:
        """The cached objects' keys in order and the object at each position: the
        cache itself, no copy (read it without awaiting in between)."""
        keys, objects = self._keys, self._objects
        return keys, lambda index: objects[keys[index]]

    def count(self, zone: str, workspace: str) -> int:
        """How many cached objects are in ``zone``/``workspace`` (every zone's when
        ``zone`` is empty)."""
        if zone:
            return self._per_scope[(zone, workspace)]
        return sum(n for (_, ws), n in self._per_scope.items() if ws == workspace)

    def entry(self, key: bytes) -> CachedEvent | None:
        """The cached object at ``key`` with its serialization."""
        return self._objects.get(key)

    def get(self, key: bytes) -> object_pb2.Object | None:
        """The cached object at ``key`` (shared: copy before changing it)."""
        cached = self._objects.get(key)
        return cached.object if cached is not None else None

    def _fail_all(self, error: errors.DoraError) -> None:
        for subscriber in list(self._subscribers):
            subscriber.fail(error)

    async def watch(
        self, *, resource_version: int, filter: Filter, bookmark_every: float = 5.0,
        resume_index: int = 0,
    ) -> AsyncIterator[bytes]:
        """Serialized ``WatchEvent`` messages for one client watcher: with
        ``resource_version`` N, every event after position (N, ``resume_index`` - 1),
        or after all of revision N when ``resume_index`` is 0."""
        if resource_version < 0 or resume_index < 0:
            raise errors.Invalid(
                "resourceVersion and resumeIndex must not be negative",
                violations=(errors.FieldViolation(
                    "resource_version" if resource_version < 0 else "resume_index",
                    "must not be negative"),))
        await self.ready.wait()
        if resource_version > self.revision:
            await self.check_version(resource_version)
        initial: list[bytes] = []
        seen: Position
        if resource_version == 0:
            initial = [e.payload for e in self._objects.values() if filter.matches(e)]
            seen = (self.revision, ALL)
            initial.append(_bookmark(self.revision))
        else:
            seen = (resource_version, resume_index - 1 if resume_index else ALL)
            if seen < self._window_start:
                raise errors.Gone(
                    f"resourceVersion {resource_version} is too old (oldest kept: "
                    f"{self._window_start[0]}); list again and watch from the list's version"
                )
            initial = [
                e.payload for e in self._window
                if (e.revision, e.index) > seen and filter.matches(e)
            ]
            if self._window:
                seen = max(seen, (self._window[-1].revision, self._window[-1].index))
        subscriber = _Subscriber(filter=filter, capacity=self._capacity,
                                 bookmark_every=bookmark_every)
        self._subscribers.add(subscriber)
        pending = subscriber.pending
        try:
            for payload in initial:
                yield payload
            while True:
                if pending:
                    item = pending.popleft()
                    subscriber.bookmark_due = False
                    if (item.revision, item.index) > seen:
                        seen = (item.revision, item.index)
                        yield item.payload
                elif subscriber.error is not None:
                    raise subscriber.error
                elif subscriber.bookmark_due:
                    # Every event up to the cache's revision was offered (and none
                    # is pending): the bookmark skips nothing.
                    subscriber.bookmark_due = False
                    seen = max(seen, (self.revision, ALL))
                    yield _bookmark(seen[0])
                else:
                    await subscriber.wait()
        finally:
            subscriber.close()
            self._subscribers.discard(subscriber)


def too_large(revision: int, current: int) -> errors.Invalid:
    return errors.Invalid(
        f"too large resource version: {revision} (the cluster is at revision {current})",
        violations=(errors.FieldViolation(
            "resource_version", f"must not be newer than the cluster's revision {current}"),))


def _bookmark(revision: int) -> bytes:
    event = resources_pb2.WatchEvent(type=EventType.BOOKMARK)
    event.object.metadata.resource_version = revision
    return event.SerializeToString()


class WatchCache:
    """Every kind's cache, started together with the apiserver."""

    def __init__(self, *, etcd: Etcd, window: int = 10_000, progress_every: float = 1.0) -> None:
        self.kinds = {
            kind.name: KindCache(kind=kind, etcd=etcd, window=window,
                                 progress_every=progress_every)
            for kind in kinds.KINDS
        }
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(cache.run(), name=f"watchcache-{name}")
                       for name, cache in self.kinds.items()]
        await asyncio.gather(*(cache.ready.wait() for cache in self.kinds.values()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def __getitem__(self, kind: str) -> KindCache:
        return self.kinds[kinds.get(kind).name]
