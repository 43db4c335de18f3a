"""The watch cache's fan-out to one watcher, fed etcd events directly (no etcd, no
gRPC): a watcher too slow loses its stream with Unavailable, bookmarks come only
when it waits, a reset sends what was pending then Gone, and nothing is skipped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest

from dora.api import errors, kinds, objects
from dora.api.v1 import resources_pb2
from dora.apiserver import registry
from dora.apiserver.storage import KV, Etcd, Event
from dora.apiserver.watchcache import Filter, KindCache

EventType = resources_pb2.WatchEvent.Type


def cache(*, capacity: int = 10_000) -> KindCache:
    kind_cache = KindCache(kind=kinds.get("Workload"), etcd=cast(Etcd, None),
                           subscriber_capacity=capacity)
    kind_cache.revision = kind_cache._window_start = 1
    kind_cache.ready.set()
    return kind_cache


def write(kind_cache: KindCache, name: str, revision: int) -> None:
    obj = objects.new("Workload", name, zone="default", workspace="default")
    key = registry.key(objects.ref_of(obj))
    kind_cache._apply(Event(key=key, deleted=False, prev=None, kv=KV(
        key=key, value=obj.SerializeToString(), mod_revision=revision,
        create_revision=revision)))


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
