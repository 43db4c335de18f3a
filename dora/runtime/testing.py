"""Unit tests of reconcilers without an apiserver: a fake client and a harness.

``FakeClient`` keeps objects in memory the way the apiserver does for a
reconciler: every write gets the next resourceVersion, a write carrying a
resourceVersion is conditional (``errors.Conflict`` when the object moved on),
``create_only`` refuses a taken name, a status write keeps the spec and an apply
the status, a delete of an object with finalizers only sets its
``deletionTimestamp`` (it goes once the last finalizer is removed), and every
change is a watch event: ``watch`` streams them (an ``Informer`` runs on it) and
``subscribe`` hands them over synchronously. ``fail(verb, error)`` makes the
next call of a verb fail, to test conflicts and outages. What it leaves out: no
admission (defaults, validation), no authorization, and no garbage collection
(deleting an owner leaves what it owns).

``Harness`` runs one ``ControllerSpec`` on a ``FakeClient`` and a ``FakeClock``
with no informer and no task: each write lands in the harness's cache at once,
its events are mapped to keys by the spec's watches (hooks first), and
``settle`` reconciles queued keys until none is left. ``advance`` moves the
clock and queues the keys whose ``requeue_after`` came due.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from dora.api import errors, kinds, labels, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, resources_pb2
from dora.runtime.cache import clone
from dora.runtime.clock import FakeClock
from dora.runtime.reconcile import Reconciler, Result
from dora.runtime.registry import ControllerSpec, Setup

Object = object_pb2.Object
WatchEvent = resources_pb2.WatchEvent
ApplyResult = resources_pb2.ApplyResponse.Result
R = TypeVar("R", bound=Reconciler)


def _body(obj: Object) -> Any:
    return objects.body(obj)


def _spec_of(obj: Object) -> Any:
    body = _body(obj)
    return body.spec if "spec" in body.DESCRIPTOR.fields_by_name else body


def _has_status(obj: Object) -> bool:
    return kinds.get(obj.kind).has_status


class FakeClient:
    """Objects in memory behind the ``ResourceClient`` protocol."""

    def __init__(self, *, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.objects: dict[Ref, Object] = {}
        self.revision = 0
        self.history: list[WatchEvent] = []
        # (verb, ref) of every write, in order: what a test asserts about.
        self.writes: list[tuple[str, Ref]] = []
        self._listeners: list[Callable[[WatchEvent], None]] = []
        self._failures: dict[str, list[errors.DoraError]] = {}
        self._changed = anyio.Event()
        self._uids = 0

    # -- test controls ----------------------------------------------------------------

    def fail(self, verb: str, error: errors.DoraError, *, times: int = 1) -> None:
        """The next ``times`` calls of ``verb`` (``apply``, ``update_status``, ``delete``,
        ``get``, ``list``) raise ``error``."""
        self._failures.setdefault(verb, []).extend([error] * times)

    def subscribe(self, listener: Callable[[WatchEvent], None]) -> None:
        """Call ``listener`` with every change, at once."""
        self._listeners.append(listener)

    def put(self, obj: Object, *, unseen: bool = False) -> Object:
        """Store ``obj`` as it is (status included), as if someone wrote it; ``unseen``:
        without telling watchers yet (a cache that is behind)."""
        stored = clone(obj)
        ref = objects.ref_of(stored)
        current = self.objects.get(ref)
        if not stored.metadata.uid:
            stored.metadata.uid = current.metadata.uid if current else self._uid()
        if not stored.metadata.generation:
            stored.metadata.generation = current.metadata.generation if current else 1
        if not stored.metadata.HasField("creation_timestamp"):
            stored.metadata.creation_timestamp.FromDatetime(self.clock.wall())
        return self._store(stored, WatchEvent.MODIFIED if current else WatchEvent.ADDED,
                           unseen=unseen)

    def stored(self, kind: str, name: str, *, zone: str = "", workspace: str = "") -> Object:
        """The object now (a test's read); KeyError when absent."""
        return self.objects[Ref(kind, zone, workspace, name)]

    def names(self, kind: str) -> list[str]:
        return sorted(r.name for r in self.objects if r.kind == kind)

    # -- the protocol -----------------------------------------------------------------

    async def apply(self, obj: Object, *, dry_run: bool = False,
                    create_only: bool = False) -> tuple[Object, ApplyResult.ValueType]:
        self._maybe_fail("apply")
        await anyio.lowlevel.checkpoint()
        ref = objects.ref_of(obj)
        current = self.objects.get(ref)
        precondition = obj.metadata.resource_version
        if precondition and (current is None
                             or current.metadata.resource_version != precondition):
            raise errors.Conflict(f"{ref}: resourceVersion {precondition} is not the latest")
        if current is not None and create_only:
            raise errors.AlreadyExists(f"{ref} already exists")
        new = clone(obj)
        if current is None:
            new.metadata.uid = self._uid()
            new.metadata.generation = 1
            new.metadata.creation_timestamp.FromDatetime(self.clock.wall())
            if _has_status(new):
                _body(new).ClearField("status")
            result = ApplyResult.CREATED
        else:
            meta = new.metadata
            meta.uid = current.metadata.uid
            meta.creation_timestamp.CopyFrom(current.metadata.creation_timestamp)
            if current.metadata.HasField("deletion_timestamp"):
                meta.deletion_timestamp.CopyFrom(current.metadata.deletion_timestamp)
            if _has_status(new):
                _body(new).status.CopyFrom(_body(current).status)
            meta.resource_version = current.metadata.resource_version
            meta.generation = current.metadata.generation
            if _spec_of(new) != _spec_of(current):
                meta.generation += 1
            if new == current:
                return current, ApplyResult.UNCHANGED
            result = ApplyResult.CONFIGURED
        if dry_run:
            return new, result
        self.writes.append(("apply", ref))
        if new.metadata.HasField("deletion_timestamp") and not new.metadata.finalizers:
            return self._remove(ref), result
        return self._store(new, WatchEvent.ADDED if current is None else WatchEvent.MODIFIED
                           ), result

    async def get(self, kind: str, name: str, *, zone: str = "", workspace: str = "",
                  resource_version: int = 0) -> Object:
        self._maybe_fail("get")
        await anyio.lowlevel.checkpoint()
        found = self.objects.get(Ref(kind, zone, workspace, name))
        if found is None:
            raise errors.NotFound(f"{kind} {name} not found")
        return clone(found)

    async def list(self, kind: str, *, zone: str = "", workspace: str = "",
                   label_selector: str = "", page_size: int = 500,
                   resource_version: int = 0) -> tuple[builtins.list[Object], int]:
        self._maybe_fail("list")
        await anyio.lowlevel.checkpoint()
        selector = labels.parse(label_selector)
        items = [clone(o) for r, o in sorted(self.objects.items())
                 if r.kind == kind and (not zone or r.zone == zone)
                 and (not workspace or r.workspace == workspace)
                 and (selector is None or selector.matches(o.metadata.labels))]
        return items, self.revision

    async def update_status(self, obj: Object) -> Object:
        self._maybe_fail("update_status")
        await anyio.lowlevel.checkpoint()
        ref = objects.ref_of(obj)
        current = self.objects.get(ref)
        if current is None:
            raise errors.NotFound(f"{ref} not found")
        precondition = obj.metadata.resource_version
        if precondition and current.metadata.resource_version != precondition:
            raise errors.Conflict(f"{ref}: resourceVersion {precondition} is not the latest")
        new = clone(current)
        _body(new).status.CopyFrom(_body(obj).status)
        if new == current:
            return clone(current)
        self.writes.append(("update_status", ref))
        return self._store(new, WatchEvent.MODIFIED)

    async def delete(self, kind: str, name: str, *, zone: str = "", workspace: str = "",
                     resource_version: int = 0) -> Object:
        self._maybe_fail("delete")
        await anyio.lowlevel.checkpoint()
        ref = Ref(kind, zone, workspace, name)
        current = self.objects.get(ref)
        if current is None:
            raise errors.NotFound(f"{ref} not found")
        if resource_version and current.metadata.resource_version != resource_version:
            raise errors.Conflict(f"{ref}: resourceVersion {resource_version} is not the "
                                  "latest")
        self.writes.append(("delete", ref))
        if not current.metadata.finalizers:
            return self._remove(ref)
        if current.metadata.HasField("deletion_timestamp"):
            return clone(current)
        new = clone(current)
        new.metadata.deletion_timestamp.FromDatetime(self.clock.wall())
        return self._store(new, WatchEvent.MODIFIED)

    async def watch(self, kind: str, *, zone: str = "", workspace: str = "",
                    label_selector: str = "", resource_version: int = 0, resume: bool = True,
                    bookmarks: bool = False, resume_index: int = 0,
                    ) -> AsyncIterator[WatchEvent]:
        """The changes after ``resource_version`` (from 0: the objects now first)."""
        if resource_version == 0:
            items, resource_version = await self.list(kind, zone=zone, workspace=workspace)
            for item in items:
                yield WatchEvent(type=WatchEvent.ADDED, object=item)
        position = next((i for i, e in enumerate(self.history)
                         if e.object.metadata.resource_version > resource_version),
                        len(self.history))
        while True:
            changed = self._changed
            while position < len(self.history):
                event = self.history[position]
                position += 1
                ref = objects.ref_of(event.object)
                if ref.kind == kind and (not zone or ref.zone == zone) and (
                        not workspace or ref.workspace == workspace):
                    yield event
            await changed.wait()

    # -- inside -----------------------------------------------------------------------

    def _maybe_fail(self, verb: str) -> None:
        queued = self._failures.get(verb)
        if queued:
            raise queued.pop(0)

    def _uid(self) -> str:
        self._uids += 1
        return f"uid-{self._uids}"

    def _store(self, obj: Object, type: WatchEvent.Type.ValueType, *,
               unseen: bool = False) -> Object:
        self.revision += 1
        obj.metadata.resource_version = self.revision
        self.objects[objects.ref_of(obj)] = obj
        if not unseen:
            self._emit(WatchEvent(type=type, object=obj))
        return clone(obj)

    def _remove(self, ref: Ref) -> Object:
        gone = self.objects.pop(ref)
        self.revision += 1
        event = clone(gone)
        event.metadata.resource_version = self.revision
        self._emit(WatchEvent(type=WatchEvent.DELETED, object=event))
        return clone(gone)

    def _emit(self, event: WatchEvent) -> None:
        self.history.append(event)
        for listener in self._listeners:
            listener(event)
        self._changed.set()
        self._changed = anyio.Event()


class FakeRecorder:
    """Keeps the events a controller records: (type, object name, reason, message)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def normal(self, obj: Object, reason: str, message: str) -> None:
        self.events.append(("Normal", obj.metadata.name, reason, message))

    def warning(self, obj: Object, reason: str, message: str) -> None:
        self.events.append(("Warning", obj.metadata.name, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, _, reason, _ in self.events]


class Harness(Generic[R]):
    """One controller on a ``FakeClient``, reconciled step by step; ``reconciler`` is
    the one ``spec`` built."""

    def __init__(self, spec: ControllerSpec[R], *, zone: str = "z",
                 client: FakeClient | None = None, options: dict[str, Any] | None = None
                 ) -> None:
        self.spec = spec
        self.zone = zone
        self.client = client or FakeClient()
        self.clock = self.client.clock
        self.recorder = FakeRecorder()
        self.cache = spec.new_cache()
        values = {o.name: o.default for o in spec.options} | (options or {})
        self.reconciler: R = spec.build(Setup(client=self.client, cache=self.cache,
                                           clock=self.clock, zone=zone,
                                           recorder=self.recorder, options=values))
        self.queue: dict[Ref, None] = {}
        self.due: dict[Ref, float] = {}
        self.results: list[tuple[Ref, Result]] = []
        for _, obj in sorted(self.client.objects.items()):
            self._on_event(WatchEvent(type=WatchEvent.ADDED, object=obj))
        self.client.subscribe(self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        obj = event.object
        if obj.kind not in self.cache:
            return
        if kinds.get(obj.kind).zoned and obj.metadata.zone != self.zone:
            return
        store = self.cache.store(obj.kind)
        deleted = event.type == WatchEvent.DELETED
        delta = store.remove(obj) if deleted else store.upsert(clone(obj))
        if delta is None:
            return
        for hook in self.spec.hooks:
            if hook.kind == obj.kind:
                hook.handle(self.reconciler, delta)
        for watch in self.spec.watches:
            if watch.kind == obj.kind:
                for key in watch.map(self.reconciler, delta):
                    self.queue[key] = None

    def enqueue(self, key: Ref) -> None:
        self.queue[key] = None

    async def reconcile(self, key: Ref) -> Result:
        """One reconcile of ``key``, now."""
        self.queue.pop(key, None)
        self.due.pop(key, None)
        result: Result = await self.reconciler.reconcile(key=key)
        self.results.append((key, result))
        if result.requeue_after > 0:
            self.due[key] = self.clock.now() + result.requeue_after
        return result

    async def settle(self, *, rounds: int = 100) -> int:
        """Reconcile queued keys until none is left; how many reconciles ran. A
        conflict queues the key again (the cache was behind), as the controller does;
        any other error is raised."""
        ran = 0
        while self.queue:
            ran += 1
            if ran > rounds:
                raise AssertionError(f"not settled after {rounds} reconciles: "
                                     f"{list(self.queue)[:5]} still queued")
            key = next(iter(self.queue))
            try:
                await self.reconcile(key)
            except errors.Conflict:
                self.queue[key] = None
        return ran

    async def advance(self, seconds: float) -> int:
        """Move the clock; reconcile what came due, and what that queued."""
        self.clock.advance(seconds)
        now = self.clock.now()
        for key, when in list(self.due.items()):
            if when <= now:
                del self.due[key]
                self.queue[key] = None
        return await self.settle()

    def wall(self) -> dt.datetime:
        return self.clock.wall()
