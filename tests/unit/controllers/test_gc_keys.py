"""Which objects the garbage collector looks at, for each change its informers see:
a dependent when it appears with owners or they change, an owner's dependents (of
every owned kind, found by the owner index) when its deletion starts or it is gone;
nothing for a status write."""

from __future__ import annotations

from typing import Any, cast

from dora.api.client import ResourceClient
from dora.api.objects import Ref
from dora.controllers.gc import OWNED_KINDS, OWNER_INDEX, GarbageCollector
from dora.runtime.cache import Cache, Delta, Store, by_owner
from tests.unit.controllers.helpers import obj


def collector(*stored: Any) -> GarbageCollector:
    cache = Cache()
    for kind in OWNED_KINDS:
        cache.add(Store(kind, indexers={OWNER_INDEX: by_owner}))
    for item in stored:
        cache.store(item.kind).upsert(item)
    # keys reads only the cache; the client is for reconcile.
    return GarbageCollector(client=cast(ResourceClient, None), cache=cache)


def test_an_owner_going_wakes_its_dependents_of_every_kind() -> None:
    web = obj("Workload", "web")
    container = obj("Container", "web.0", owner="web")
    version = obj("Workloadversion", "web.v1", owner="web")
    other = obj("Container", "db.0", owner="db")
    gc = collector(web, container, version, other)
    expected = {Ref("Container", "z", "w", "web.0"), Ref("Workloadversion", "z", "w", "web.v1")}
    assert set(gc.keys(Delta(web, None))) == expected
    marked = obj("Workload", "web", rv=2)
    marked.metadata.deletion_timestamp.GetCurrentTime()
    assert set(gc.keys(Delta(web, marked))) == expected
    again = obj("Workload", "web", rv=3)
    again.CopyFrom(marked)
    again.metadata.resource_version = 3
    assert list(gc.keys(Delta(marked, again))) == []  # already being deleted


def test_a_dependent_is_looked_at_when_it_appears_or_its_owners_change() -> None:
    gc = collector()
    container = obj("Container", "web.0", owner="web")
    assert list(gc.keys(Delta(None, container))) == [Ref("Container", "z", "w", "web.0")]
    assert list(gc.keys(Delta(container, container))) == [  # a resync
        Ref("Container", "z", "w", "web.0")]
    running = obj("Container", "web.0", rv=2, owner="web")
    running.container.status.phase = "Running"
    assert list(gc.keys(Delta(container, running))) == []  # a status write
    adopted = obj("Container", "web.0", rv=3, owner="db")
    assert list(gc.keys(Delta(running, adopted))) == [Ref("Container", "z", "w", "web.0")]
    assert list(gc.keys(Delta(None, obj("Container", "loose")))) == []  # owns nothing
