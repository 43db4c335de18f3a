"""What a controller watches: a kind, which of its events matter, and the keys they map to.

An informer hands every change of its kind to its handlers as an ``Event``
(``added``, ``updated``, ``deleted`` or ``resync``, see ``cache.EventType``).
A ``Watch`` says, for one controller, which of those events matter (a
*predicate*) and which keys they wake (a *key mapper*). Key mappers are pure:
they read the event and the cache, never write anything; a controller that must
react to an event itself (forget a node it cached, note when a lease expired)
says so with a ``Hook``, an explicit event handler.

Mappers and hooks receive the controller's reconciler first, so a method of the
reconciler class is one (``Watch(kinds.LEASE, NodeLifecycle.lease_keys)``); the
mappers here ignore it. ``owner_key(kind)`` is controller-runtime's
``EnqueueRequestForOwner``; ``own_key`` its ``EnqueueRequestForObject``.
Predicates pass every event but updates, which they judge (controller-runtime's
``GenerationChangedPredicate`` and friends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dora.api import kinds, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.runtime.cache import Event as Event
from dora.runtime.cache import EventType as EventType

R = TypeVar("R")

# The keys an event wakes, given the reconciler (a method of its class fits).
KeyMapper = Callable[[R, Event], Iterable[Ref]]
# Whether an event matters.
Predicate = Callable[[Event], bool]
# An explicit reaction to an event (it must not block: it only updates memory).
EventHandler = Callable[[R, Event], None]


@dataclass(frozen=True)
class Watch(Generic[R]):
    """Events of ``kind`` that pass ``predicate`` wake the keys ``keys`` maps them to."""

    kind: str
    keys: Callable[[R, Event], Iterable[Ref]]
    predicate: Predicate | None = None

    def __post_init__(self) -> None:
        kinds.get(self.kind)  # an unknown kind fails here, at import

    def map(self, reconciler: R, event: Event) -> Iterable[Ref]:
        if self.predicate is not None and not self.predicate(event):
            return ()
        return self.keys(reconciler, event)


@dataclass(frozen=True)
class Hook(Generic[R]):
    """``handle`` is called with every event of ``kind``, before any key is mapped."""

    kind: str
    handle: Callable[[R, Event], None]

    def __post_init__(self) -> None:
        kinds.get(self.kind)


# -- key mappers --------------------------------------------------------------------

def own_key(_: object, event: Event) -> list[Ref]:
    """The object itself."""
    return [objects.ref_of(event.object)]


def owner_key(kind: str) -> Callable[[object, Event], list[Ref]]:
    """The controlling owner of kind ``kind`` (a Container's Workload), in the object's
    zone and, when ``kind`` lives in one, workspace. Old and new owners both, so an
    object handed to another owner wakes both."""
    info = kinds.get(kind)

    def keys(_: object, event: Event) -> list[Ref]:
        found: list[Ref] = []
        for obj in (event.old, event.new):
            if obj is None:
                continue
            meta = obj.metadata
            for owner in meta.owner_references:
                if owner.kind == kind and owner.controller:
                    ref = Ref(kind, meta.zone if info.zoned else "",
                              meta.workspace if info.workspaced else "", owner.name)
                    if ref not in found:
                        found.append(ref)
        return found

    keys.__qualname__ = f"owner_key({kind!r})"
    return keys


# -- predicates ---------------------------------------------------------------------

def _updated(test: Callable[[object_pb2.Object, object_pb2.Object], bool]) -> Predicate:
    def predicate(event: Event) -> bool:
        if event.type is not EventType.UPDATED:
            return True
        assert event.old is not None and event.new is not None
        return test(event.old, event.new)

    return predicate


def _body(obj: object_pb2.Object) -> Any:
    return objects.body(obj)


generation_changed = _updated(lambda old, new: old.metadata.generation
                              != new.metadata.generation)
generation_changed.__doc__ = "An update that changed the spec (the generation moved)."
labels_changed = _updated(lambda old, new: old.metadata.labels != new.metadata.labels)
labels_changed.__doc__ = "An update that changed the labels."
finalizers_changed = _updated(lambda old, new: list(old.metadata.finalizers)
                              != list(new.metadata.finalizers))
finalizers_changed.__doc__ = "An update that changed the finalizers."
spec_changed = _updated(lambda old, new: _body(old).spec != _body(new).spec)
spec_changed.__doc__ = "An update that changed the spec itself (for kinds without a generation)."
deletion_started = _updated(lambda old, new: old.metadata.HasField("deletion_timestamp")
                            != new.metadata.HasField("deletion_timestamp"))
deletion_started.__doc__ = "An update that set the deletionTimestamp."


def any_of(*predicates: Predicate) -> Predicate:
    """Passes what any of ``predicates`` passes."""
    return lambda event: any(p(event) for p in predicates)


def named(prefix: str) -> Predicate:
    """Objects whose name starts with ``prefix`` (``node.`` Leases), on every event."""
    return lambda event: event.object.metadata.name.startswith(prefix)


def all_of(*predicates: Predicate) -> Predicate:
    return lambda event: all(p(event) for p in predicates)
