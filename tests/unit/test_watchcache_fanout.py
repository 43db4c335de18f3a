"""The watch cache's fan-out to one watcher, fed etcd events directly (no etcd, no
gRPC): a watcher too slow loses its stream with Unavailable, bookmarks come only
when it waits, a reset sends what was pending then Gone, and nothing is skipped:
the events of one revision (one transaction changing several objects) all come,
and a watcher resumes between them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest

from dora.api import errors, kinds, objects
from dora.api.v1 import resources_pb2
from dora.apiserver import registry
from dora.apiserver.storage import KV, Etcd, Event
from dora.apiserver.watchcache import ALL, Filter, KindCache

EventType = resources_pb2.WatchEvent.Type


def cache(*, capacity: int = 10_000) -> KindCache:
    kind_cache = KindCache(kind=kinds.get("Workload"), etcd=cast(Etcd, None),
                           subscriber_capacity=capacity)
    kind_cache.revision = 1
    kind_cache._window_start = (1, ALL)
    kind_cache.ready.set()
    return kind_cache


def write(kind_cache: KindCache, name: str, revision: int) -> None:
    obj = objects.new("Workload", name, zone="default", workspace="default")
    key = registry.key(objects.ref_of(obj))
    kind_cache._apply(Event(key=key, deleted=False, prev=None, kv=KV(
        key=key, value=obj.SerializeToString(), mod_revision=revision,
        create_revision=revision)))


def write_txn(kind_cache: KindCache, names: list[str], revision: int) -> None:
    """One transaction creating ``names``: their events share ``revision``."""
    for name in names:
        write(kind_cache, name, revision)


def parse_indexed(payload: bytes) -> tuple[str, int, int]:
    event = resources_pb2.WatchEvent.FromString(payload)
    return event.object.metadata.name, event.object.metadata.resource_version, \
        event.revision_index


def parse(payload: bytes) -> tuple[int, str, int]:
    event = resources_pb2.WatchEvent.FromString(payload)
    return event.type, event.object.metadata.name, event.object.metadata.resource_version


async def next_event(stream: AsyncIterator[bytes]) -> tuple[int, str, int]:
    async with asyncio.timeout(2):
        return parse(await anext(stream))


async def test_events_in_order_then_a_bookmark_only_once_idle() -> None:
    kind_cache = cache()
    stream = kind_cache.watch(resource_version=1, filter=Filter(), bookmark_every=0.2)
    first = asyncio.ensure_future(next_event(stream))
    await asyncio.sleep(0.05)  # the watcher is subscribed and waiting
    write(kind_cache, "a", 2)
    write(kind_cache, "b", 3)
    assert await first == (EventType.ADDED, "a", 2)
    assert await next_event(stream) == (EventType.ADDED, "b", 3)
    # Writes every 50 ms: never idle for 0.2 s, so no bookmark between them.
    for revision in range(4, 10):
        pending = asyncio.ensure_future(next_event(stream))
        await asyncio.sleep(0.05)
        write(kind_cache, f"w{revision}", revision)
        assert await pending == (EventType.ADDED, f"w{revision}", revision)
    kind_cache._advance(12)  # a progress mark from etcd
    started = asyncio.get_running_loop().time()
    assert await next_event(stream) == (EventType.BOOKMARK, "", 12)
    assert asyncio.get_running_loop().time() - started >= 0.15
    await stream.aclose()  # type: ignore[attr-defined]
    assert not kind_cache._subscribers


async def test_a_watcher_too_slow_gets_unavailable_after_nothing_else() -> None:
    kind_cache = cache(capacity=3)
    stream = kind_cache.watch(resource_version=1, filter=Filter())
    first = asyncio.ensure_future(next_event(stream))
    await asyncio.sleep(0.01)
    write(kind_cache, "w2", 2)
    assert await first == (EventType.ADDED, "w2", 2)
    for revision in range(3, 8):  # 3 pending fill it, the 4th is one too many
        write(kind_cache, f"w{revision}", revision)
    with pytest.raises(errors.Unavailable, match="too slow"):
        await next_event(stream)
    assert not kind_cache._subscribers


async def test_a_reset_sends_the_pending_events_then_gone() -> None:
    kind_cache = cache()
    stream = kind_cache.watch(resource_version=1, filter=Filter())
    first = asyncio.ensure_future(next_event(stream))
    await asyncio.sleep(0.01)
    write(kind_cache, "a", 2)
    write(kind_cache, "b", 3)
    kind_cache._fail_all(errors.Gone("reset"))
    write(kind_cache, "c", 4)  # after the error: not sent
    assert await first == (EventType.ADDED, "a", 2)
    assert await next_event(stream) == (EventType.ADDED, "b", 3)
    with pytest.raises(errors.Gone):
        await next_event(stream)


async def test_filters_still_apply_per_event() -> None:
    kind_cache = cache()
    seen: list[str] = []
    only_b = Filter(permits=lambda zone, workspace, name: name.startswith("b"))
    stream = kind_cache.watch(resource_version=1, filter=only_b)
    first = asyncio.ensure_future(next_event(stream))
    await asyncio.sleep(0.01)
    for revision, name in enumerate(["a1", "b1", "a2", "b2"], start=2):
        write(kind_cache, name, revision)
    seen.append((await first)[1])
    seen.append((await next_event(stream))[1])
    assert seen == ["b1", "b2"]
    await stream.aclose()  # type: ignore[attr-defined]


async def drain(stream: AsyncIterator[bytes], count: int) -> list[tuple[str, int, int]]:
    got = []
    for _ in range(count):
        async with asyncio.timeout(2):
            got.append(parse_indexed(await anext(stream)))
    return got


async def test_a_live_watcher_gets_every_event_of_a_revision() -> None:
    kind_cache = cache()
    stream = kind_cache.watch(resource_version=1, filter=Filter())
    first = asyncio.ensure_future(drain(stream, 5))
    await asyncio.sleep(0.01)
    write_txn(kind_cache, ["a", "b", "c"], 2)
    write_txn(kind_cache, ["d", "e"], 3)
    assert await first == [("a", 2, 0), ("b", 2, 1), ("c", 2, 2), ("d", 3, 0), ("e", 3, 1)]
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("resume_index", "expected"), [
    (0, ["d"]),            # all of revision 2 received
    (1, ["b", "c", "d"]),  # only a
    (2, ["c", "d"]),       # a and b
    (3, ["d"]),            # a, b and c: the whole revision
])
async def test_a_watcher_resumes_between_the_events_of_one_revision(
    resume_index: int, expected: list[str]
) -> None:
    kind_cache = cache()
    write_txn(kind_cache, ["a", "b", "c"], 2)
    write(kind_cache, "d", 3)
    stream = kind_cache.watch(resource_version=2, resume_index=resume_index, filter=Filter())
    got = await drain(stream, len(expected))
    assert [name for name, _, _ in got] == expected
    await stream.aclose()  # type: ignore[attr-defined]


async def test_resuming_from_before_a_revision_replays_all_of_it_even_filtered() -> None:
    kind_cache = cache()
    only_c = Filter(permits=lambda zone, workspace, name: name in ("c", "d"))
    write_txn(kind_cache, ["a", "b", "c"], 2)
    write(kind_cache, "d", 3)
    stream = kind_cache.watch(resource_version=1, filter=only_c)
    # The index is the event's place among all of its revision's, not the watcher's share.
    assert await drain(stream, 2) == [("c", 2, 2), ("d", 3, 0)]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_a_window_that_dropped_part_of_a_revision_is_gone_before_it() -> None:
    kind_cache = KindCache(kind=kinds.get("Workload"), etcd=cast(Etcd, None), window=3)
    kind_cache.revision = 1
    kind_cache._window_start = (1, ALL)
    kind_cache.ready.set()
    write_txn(kind_cache, ["a", "b", "c"], 2)
    write(kind_cache, "d", 3)  # drops a (2, 0) from the window
    with pytest.raises(errors.Gone):
        await anext(kind_cache.watch(resource_version=1, filter=Filter()))
    stream = kind_cache.watch(resource_version=2, resume_index=1, filter=Filter())
    assert [n for n, _, _ in await drain(stream, 3)] == ["b", "c", "d"]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_negative_versions_are_invalid() -> None:
    kind_cache = cache()
    for rv, index in ((-1, 0), (1, -1)):
        with pytest.raises(errors.Invalid):
            await anext(kind_cache.watch(resource_version=rv, resume_index=index,
                                         filter=Filter()))
