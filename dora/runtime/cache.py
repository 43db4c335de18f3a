"""The in-memory cache the informers fill and the reconcilers read.

A ``Store`` holds the objects of one kind by ``Ref``, plus indexes: an index
function maps an object to the values it is filed under (``owner`` files a
Container under its Workload's uid, ``node`` under its node name), so "the
containers of this workload" is a dictionary lookup, not a scan.

Objects in a store are shared by every reader and must never be changed in
place: ``clone`` one before building a write from it. A reconciler reads the
cache, never the event that woke it; a deleted object is simply absent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from dora.api import objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2

Object = object_pb2.Object
IndexFunc = Callable[[Object], Iterable[str]]


def clone(obj: Object) -> Object:
    copy = Object()
    copy.CopyFrom(obj)
    return copy


class EventType(enum.Enum):
    ADDED = "added"
    UPDATED = "updated"
    DELETED = "deleted"
    # The object again, unchanged: a periodic resync, or a replica starting to lead.
    RESYNC = "resync"


@dataclass(frozen=True)
class Delta:
    """What changed in a store: ``old`` is None when added, ``new`` None when deleted,
    both the same object on a resync. Handlers receive it as an ``Event``."""

    old: Object | None
    new: Object | None

    @property
    def object(self) -> Object:
        obj = self.new if self.new is not None else self.old
        assert obj is not None
        return obj

    @property
    def type(self) -> EventType:
        if self.old is None:
            return EventType.ADDED
        if self.new is None:
            return EventType.DELETED
        if self.old is self.new:
            return EventType.RESYNC
        return EventType.UPDATED


# What an informer hands its handlers.
Event = Delta


class IndexClash(ValueError):
    """Two different functions were given the same index name on one store."""


class Store:
    def __init__(self, kind: str, *, indexers: dict[str, IndexFunc] | None = None) -> None:
        self.kind = kind
        self._objects: dict[Ref, Object] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[Ref]]] = {}
        # ``by_index``'s sorted refs of one (index, value), until that value's refs change.
        self._sorted: dict[tuple[str, str], list[Ref]] = {}
        # Counts every change (an upsert that stored, a removal): what is derived from
        # the store's objects can be kept until it moves.
        self.changes = 0
        for name, func in (indexers or {}).items():
            self.add_index(name, func)

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[Object]:
        return iter(list(self._objects.values()))

    def get(self, ref: Ref) -> Object | None:
        return self._objects.get(ref)

    def get_named(self, name: str, *, zone: str = "", workspace: str = "") -> Object | None:
        return self._objects.get(Ref(self.kind, zone, workspace, name))

    def by_index(self, index: str, value: str) -> list[Object]:
        """The objects filed under ``value``, in the order of their Refs."""
        ordered = self._sorted.get((index, value))
        if ordered is None:
            refs = self._indexes[index].get(value, ())
            # One store holds one kind: sorting on the rest of the Ref is the same order,
            # without a dataclass comparison per step.
            ordered = sorted(refs, key=_ref_order)
            self._sorted[(index, value)] = ordered
        objs = self._objects
        return [objs[r] for r in ordered]

    def index_values(self, index: str) -> list[str]:
        return sorted(self._indexes[index])

    def add_index(self, name: str, func: IndexFunc) -> None:
        """File objects under ``func``'s values as index ``name``. Adding the same
        function again is nothing; another function under a taken name is an error
        (two controllers would each read the other's values)."""
        known = self._indexers.get(name)
        if known is func:
            return
        if known is not None:
            raise IndexClash(f"{self.kind} store: index {name!r} is already "
                             f"{_name_of(known)}, not {_name_of(func)}")
        self._indexers[name] = func
        index: dict[str, set[Ref]] = {}
        for ref, obj in self._objects.items():
            for value in func(obj):
                index.setdefault(value, set()).add(ref)
        self._indexes[name] = index
        self._sorted = {k: v for k, v in self._sorted.items() if k[0] != name}

    def upsert(self, obj: Object) -> Delta | None:
        """Store ``obj``; None when the store already had this version or a newer one."""
        ref = objects.ref_of(obj)
        old = self._objects.get(ref)
        if old is not None and old.metadata.resource_version >= obj.metadata.resource_version:
            return None
        self._put(ref, obj)
        return Delta(old, obj)

    def remove(self, obj: Object) -> Delta | None:
        ref = objects.ref_of(obj)
        old = self._objects.pop(ref, None)
        if old is None:
            return None
        self.changes += 1
        self._unindex(ref, old)
        return Delta(old, None)

    def replace(self, items: Iterable[Object]) -> list[Delta]:
        """Make the store hold exactly ``items`` (a fresh list); what changed."""
        fresh = {objects.ref_of(o): o for o in items}
        deltas = [Delta(old, None) for ref, old in self._objects.items() if ref not in fresh]
        for delta in deltas:
            self.remove(delta.object)
        for ref, obj in fresh.items():
            old = self._objects.get(ref)
            if old is None or old.metadata.resource_version != obj.metadata.resource_version:
                self._put(ref, obj)
                deltas.append(Delta(old, obj))
        return deltas

    def _put(self, ref: Ref, obj: Object) -> None:
        self.changes += 1
        old = self._objects.get(ref)
        self._objects[ref] = obj
        if old is None:
            self._index(ref, obj)
            return
        for name, func in self._indexers.items():
            before, after = list(func(old)), list(func(obj))
            if before != after:  # most updates keep an object where it is filed
                self._file(name, ref, before, after)

    def _file(self, name: str, ref: Ref, before: list[str], after: list[str]) -> None:
        index = self._indexes[name]
        for value in before:
            self._sorted.pop((name, value), None)
            refs = index.get(value)
            if refs is not None:
                refs.discard(ref)
                if not refs:
                    del index[value]
        for value in after:
            index.setdefault(value, set()).add(ref)
            self._sorted.pop((name, value), None)

    def _index(self, ref: Ref, obj: Object) -> None:
        for name, func in self._indexers.items():
            self._file(name, ref, [], list(func(obj)))

    def _unindex(self, ref: Ref, obj: Object) -> None:
        for name, func in self._indexers.items():
            self._file(name, ref, list(func(obj)), [])


def _ref_order(ref: Ref) -> tuple[str, str, str]:
    return ref.zone, ref.workspace, ref.name


def _name_of(func: IndexFunc) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


class Cache:
    """The stores of every watched kind, by kind name."""

    def __init__(self) -> None:
        self._stores: dict[str, Store] = {}

    def store(self, kind: str) -> Store:
        try:
            return self._stores[kind]
        except KeyError:
            raise KeyError(f"no informer for {kind}: add it to the manager") from None

    def add(self, store: Store) -> None:
        self._stores[store.kind] = store

    def __contains__(self, kind: str) -> bool:
        return kind in self._stores


# Indexes the controllers share.

def by_controller_owner(obj: Object) -> list[str]:
    """The uid of the object's controlling owner (a Container's Workload)."""
    return [o.uid for o in obj.metadata.owner_references if o.controller]


def by_owner(obj: Object) -> list[str]:
    return [o.uid for o in obj.metadata.owner_references]


def by_node(obj: Object) -> list[str]:
    """A Container's node (bound or reserved)."""
    node = obj.container.spec.node_name
    return [node] if node else []


