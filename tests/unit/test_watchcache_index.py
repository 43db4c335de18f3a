"""The watch cache's label index: ``KindCache.select`` answers exactly what a pass
over every cached object would, through creates, relabels, deletes and relists."""

from __future__ import annotations

from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from dora.api import kinds, labels, objects
from dora.apiserver import registry, watchcache
from dora.apiserver.storage import KV, Etcd, Event
from dora.apiserver.watchcache import KindCache

NAMES = ("a", "b", "c", "d")
VALUES = ("x", "y", "z")
SELECTORS = ("tier=x", "tier in (x,y)", "tier!=x", "tier", "!tier", "tier=x,app=y",
             "app notin (z)", "tier=x,tier=y", "")


def new_cache() -> KindCache:
    kind_cache = KindCache(kind=kinds.get("Workload"), etcd=cast(Etcd, None))
    kind_cache.ready.set()
    return kind_cache


def key_of(name: str) -> bytes:
    return registry.key(objects.Ref("Workload", "default", "default", name))


def kv(name: str, revision: int, created: int, **label_values: str) -> KV:
    obj = objects.new("Workload", name, zone="default", workspace="default")
    obj.metadata.labels.update(label_values)
    return KV(key=key_of(name), value=obj.SerializeToString(), mod_revision=revision,
              create_revision=created)


def names(kind_cache: KindCache, selector: str) -> list[str]:
    return [e.object.metadata.name for e in kind_cache.select(labels.parse(selector))]


def test_select_follows_relabels_and_deletes() -> None:
    kind_cache = new_cache()
    kind_cache._apply(Event(key=key_of("a"), deleted=False, prev=None,
                            kv=kv("a", 2, 2, tier="x")))
    kind_cache._apply(Event(key=key_of("b"), deleted=False, prev=None,
                            kv=kv("b", 3, 3, tier="x", app="y")))
    assert names(kind_cache, "tier=x") == ["a", "b"]
    assert names(kind_cache, "tier=x,app=y") == ["b"]
    kind_cache._apply(Event(key=key_of("a"), deleted=False, prev=kv("a", 2, 2, tier="x"),
                            kv=kv("a", 4, 2, tier="y")))
    assert names(kind_cache, "tier=x") == ["b"]
    assert names(kind_cache, "tier in (x, y)") == ["a", "b"]
    kind_cache._apply(Event(key=key_of("b"), deleted=True, prev=kv("b", 3, 3, tier="x"),
                            kv=KV(key=key_of("b"), value=b"", mod_revision=5,
                                  create_revision=0)))
    assert names(kind_cache, "tier=x") == []
    assert kind_cache._by_label == {("tier", "y"): {key_of("a")}}


# A write: (name, None) deletes the object, else it gets these labels.
writes = st.lists(st.tuples(
    st.sampled_from(NAMES),
    st.none() | st.dictionaries(st.sampled_from(("tier", "app")), st.sampled_from(VALUES)),
), max_size=30)


@settings(max_examples=200, deadline=None)
@given(writes=writes)
def test_select_is_a_pass_over_every_object(
        writes: list[tuple[str, dict[str, str] | None]]) -> None:
    kind_cache = new_cache()
    stored: dict[str, tuple[KV, dict[str, str]]] = {}
    revision = 1
    for name, label_values in writes:
        revision += 1
        prev = stored.get(name)
        if label_values is None:
            if prev is None:
                continue
            kind_cache._apply(Event(key=key_of(name), deleted=True, prev=prev[0], kv=KV(
                key=key_of(name), value=b"", mod_revision=revision, create_revision=0)))
            del stored[name]
        else:
            created = prev[0].create_revision if prev else revision
            new = kv(name, revision, created, **label_values)
            kind_cache._apply(Event(key=key_of(name), deleted=False,
                                    prev=prev[0] if prev else None, kv=new))
            stored[name] = (new, label_values)
    for selector in SELECTORS:
        parsed = labels.parse(selector)
        expected = sorted(n for n, (_, values) in stored.items() if parsed.matches(values))
        assert names(kind_cache, selector) == expected, selector
    snapshot = kind_cache.snapshot()
    assert snapshot.keys == sorted(key_of(n) for n in stored)
    assert [e.key for e in snapshot.entries] == snapshot.keys


def test_a_kept_snapshot_stays_as_it_was_and_the_newest_are_kept() -> None:
    """The pages of a List are cut from the objects at its revision: later writes
    change the cache, not a snapshot kept for them; older ones are let go."""
    kind_cache = new_cache()
    kind_cache._apply(Event(key=key_of("a"), deleted=False, prev=None, kv=kv("a", 2, 2)))
    first = kind_cache.snapshot()
    kind_cache.keep(first)
    assert first.revision == 2
    assert kind_cache.snapshot_at(2) is first
    kind_cache._apply(Event(key=key_of("b"), deleted=False, prev=None, kv=kv("b", 3, 3)))
    kept = kind_cache.snapshot_at(2)
    assert kept is first and [e.object.metadata.name for e in kept.entries] == ["a"]
    assert [e.object.metadata.name for e in kind_cache.snapshot().entries] == ["a", "b"]
    assert kind_cache.snapshot_at(1) is None, "older than anything kept: read etcd"
    for revision in range(4, 4 + watchcache.SNAPSHOTS):
        kind_cache._apply(Event(key=key_of("c"), deleted=False, prev=None,
                                kv=kv("c", revision, 4)))
        kind_cache.keep(kind_cache.snapshot())
    assert kind_cache.snapshot_at(2) is None, "only the newest SNAPSHOTS are kept"
    latest = kind_cache.snapshot_at(3 + watchcache.SNAPSHOTS)
    assert latest is not None and len(latest.entries) == 3
