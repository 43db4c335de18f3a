"""Watch semantics: initial state and bookmark, exact resume (inside a revision of
several events too), gone and future versions, fan-out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from dora.api import errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver import registry
from dora.apiserver.server import APIServer, Config
from dora.apiserver.storage import Etcd

pytestmark = pytest.mark.usefixtures("default_scope")


def zone(name: str, endpoint: str = "") -> object_pb2.Object:
    obj = objects.new("Zone", name)
    obj.zone.spec.endpoint = endpoint
    return obj


async def take(stream: AsyncIterator[WatchEvent], count: int,
               within: float = 10.0) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    async with asyncio.timeout(within):
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_from_zero_the_current_objects_then_a_bookmark_then_changes(client: Client) -> None:
    await client.apply(zone("a"))
    await client.apply(zone("b"))
    stream = client.watch("Zone", bookmarks=True)
    initial = await take(stream, 4)
    assert [e.type for e in initial] == [WatchEvent.ADDED] * 3 + [WatchEvent.BOOKMARK]
    assert {e.object.metadata.name for e in initial[:3]} == {"a", "b", "default"}
    bookmark = initial[-1].object.metadata.resource_version
    assert bookmark >= max(e.object.metadata.resource_version for e in initial[:3])

    changed, _ = await client.apply(zone("a", "https://a.example"))
    await client.delete("Zone", "b")
    events = [e for e in await take(stream, 2) if e.type != WatchEvent.BOOKMARK]
    while len(events) < 2:
        events += [e for e in await take(stream, 1) if e.type != WatchEvent.BOOKMARK]
    assert [(e.type, e.object.metadata.name) for e in events] == [
        (WatchEvent.MODIFIED, "a"), (WatchEvent.DELETED, "b")
    ]
    assert events[0].object == changed
    assert events[1].object.metadata.resource_version > changed.metadata.resource_version
    await stream.aclose()  # type: ignore[attr-defined]


async def test_resuming_watcher_sees_every_change_once_in_order(client: Client) -> None:
    writes: dict[int, str] = {}

    async def writer() -> None:
        for index in range(2000):
            obj, _ = await client.apply(zone(f"z{index % 50}", f"https://{index}"))
            writes[obj.metadata.resource_version] = obj.metadata.name

    first = await client.list("Zone")
    version = first[1]
    task = asyncio.create_task(writer())
    seen: list[tuple[int, str]] = []
    reconnects = 0
    done = False
    async with asyncio.timeout(100):
        while not done:
            stream = client.watch("Zone", resource_version=version, resume=False, bookmarks=True)
            received = 0
            async for event in stream:
                version = event.object.metadata.resource_version
                if event.type == WatchEvent.BOOKMARK:
                    done = task.done() and version >= max(writes)
                    if done:
                        break
                    continue
                seen.append((version, event.object.metadata.name))
                received += 1
                if received == 300:
                    break
            await stream.aclose()  # type: ignore[attr-defined]
            reconnects += 1
    await task
    revisions = [revision for revision, _ in seen]
    assert revisions == sorted(set(revisions)), "in order, no duplicate"
    assert dict(seen) == writes, "no gap"
    assert reconnects >= 6


async def test_a_version_older_than_the_cache_window_is_gone_and_a_relist_recovers(
    apiserver_config: Config, etcd: Etcd, apiserver: APIServer, admin_token: str
) -> None:
    await apiserver.stop(grace=0)
    apiserver_config.watch_window = 50
    server = APIServer(apiserver_config)
    await server.start()
    try:
        async with Client(f"127.0.0.1:{server.port}", token=admin_token) as client:
            created, _ = await client.apply(zone("a"))
            for index in range(120):
                await client.apply(zone("a", f"https://{index}"))
            await etcd.compact(await etcd.revision())
            with pytest.raises(errors.Gone):
                await take(client.watch("Zone", resource_version=created.metadata.resource_version),
                           1)
            items, version = await client.list("Zone")
            assert {o.metadata.name for o in items} == {"a", "default"}
            stream = client.watch("Zone", resource_version=version)
            after, _ = await client.apply(zone("after"))
            [event] = await take(stream, 1)
            assert event.object == after
            await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await server.stop(grace=0)


async def test_two_hundred_watchers_receive_the_same_events(client: Client) -> None:
    _, version = await client.list("Zone")
    streams = [client.watch("Zone", resource_version=version) for _ in range(200)]
    readers = [asyncio.create_task(take(stream, 20, within=60)) for stream in streams]
    written = []
    for index in range(20):
        obj, _ = await client.apply(zone(f"fan{index}"))
        written.append(obj)
    results = await asyncio.gather(*readers)
    for events in results:
        assert [e.object for e in events] == written
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_idle_watchers_get_bookmarks_that_move_with_other_kinds(client: Client) -> None:
    stream = client.watch("Node", bookmarks=True)
    [bookmark] = await take(stream, 1)
    assert bookmark.type == WatchEvent.BOOKMARK
    written, _ = await client.apply(zone("elsewhere"))
    async with asyncio.timeout(10):
        async for event in stream:
            assert event.type == WatchEvent.BOOKMARK
            if event.object.metadata.resource_version >= written.metadata.resource_version:
                break
    await stream.aclose()  # type: ignore[attr-defined]


async def test_watch_filters_by_zone_workspace_and_labels(client: Client) -> None:
    await client.apply(zone("z2"))
    await client.apply(objects.new("Workspace", "ws2"))
    _, version = await client.list("Volume", zone="z2", workspace="ws2")
    stream = client.watch("Volume", zone="z2", workspace="ws2", label_selector="keep=yes",
                          resource_version=version)
    for zone_name, workspace, keep in [("default", "ws2", "yes"), ("z2", "default", "yes"),
                                       ("z2", "ws2", "no"), ("z2", "ws2", "yes")]:
        volume = objects.new("Volume", f"v-{zone_name}-{workspace}-{keep}", zone=zone_name,
                             workspace=workspace)
        volume.volume.spec.storage = "st"
        volume.metadata.labels["keep"] = keep
        await client.apply(volume)
    [event] = await take(stream, 1)
    assert event.object.metadata.name == "v-z2-ws2-yes"
    with contextlib.suppress(TimeoutError):
        extra = await take(stream, 1, within=0.5)
        pytest.fail(f"unexpected event {extra}")
    await stream.aclose()  # type: ignore[attr-defined]


async def test_a_bad_kind_is_invalid(client: Client) -> None:
    with pytest.raises(errors.Invalid, match="Pod"):
        await take(client.watch("Pod"), 1)


def raw_zone(name: str) -> tuple[bytes, bytes]:
    obj = zone(name)
    obj.metadata.uid = f"uid-{name}"
    return registry.key(objects.ref_of(obj)), obj.SerializeToString()


async def events_of(stream: AsyncIterator[WatchEvent], count: int) -> list[tuple[int, str, int]]:
    """The next ``count`` non-bookmark events: (type, name, revision_index)."""
    got: list[tuple[int, str, int]] = []
    async with asyncio.timeout(10):
        async for event in stream:
            if event.type != WatchEvent.BOOKMARK:
                got.append((event.type, event.object.metadata.name, event.revision_index))
                if len(got) == count:
                    break
    return got


async def test_one_etcd_transaction_of_three_keys_reaches_every_watcher_whole(
    client: Client, etcd: Etcd
) -> None:
    """A raw transaction (as a ``del --prefix`` or an expiring lease makes them)
    creates three Zones at one revision, another deletes them at one revision:
    a watcher already open, one resumed from before, and ones resumed between
    the events of the revision each get every event once."""
    names = ["t1", "t2", "t3"]
    before = await etcd.revision()
    live = client.watch("Zone", resource_version=before)
    assert await etcd.create_all([raw_zone(n) for n in names])
    created = await etcd.revision()
    assert await etcd.delete_all([raw_zone(n)[0] for n in names]) == created + 1
    added = [(WatchEvent.ADDED, n, i) for i, n in enumerate(names)]
    deleted = [(WatchEvent.DELETED, n, i) for i, n in enumerate(names)]
    assert await events_of(live, 6) == added + deleted
    await live.aclose()  # type: ignore[attr-defined]

    resumed = client.watch("Zone", resource_version=before)
    assert await events_of(resumed, 6) == added + deleted
    await resumed.aclose()  # type: ignore[attr-defined]

    for index in (1, 2, 3):
        between = client.watch("Zone", resource_version=created, resume_index=index)
        assert await events_of(between, 6 - index) == (added + deleted)[index:]
        await between.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [10**15, 2**62])
async def test_a_future_resource_version_is_refused_as_too_large(
    client: Client, version: int
) -> None:
    await client.apply(zone("now"))
    with pytest.raises(errors.Invalid, match="too large resource version") as caught:
        await take(client.watch("Zone", resource_version=version, resume=False), 1)
    assert caught.value.violations[0].field == "resource_version"
    with pytest.raises(errors.Invalid, match="too large resource version"):
        await client.get("Zone", "now", resource_version=version)
    with pytest.raises(errors.Invalid, match="too large resource version"):
        await client.list("Zone", resource_version=version)


async def test_a_version_just_written_is_not_too_large(client: Client) -> None:
    """The refusal is only for versions the cluster has not reached: a watch from
    the version a write just returned waits for the cache instead."""
    for i in range(5):
        written, _ = await client.apply(zone(f"fresh{i}"))
        got = await client.get("Zone", f"fresh{i}",
                               resource_version=written.metadata.resource_version)
        assert got.metadata.resource_version == written.metadata.resource_version
