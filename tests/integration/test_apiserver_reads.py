"""Reads served from the watch cache: the same objects as etcd's, sent as the cache
serialized them, and filtered by the caller's permissions as they are now (a role
granted or taken away counts at once, although what a user's roles come to is kept
between calls)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from dora.api import codec, errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver import watchcache
from dora.apiserver.server import APIServer, Config
from dora.apiserver.storage import Etcd, Range, WatchBatch

ZONE = "reads-zone"
MINE, OTHER = "mine", "other"


def workload(name: str, workspace: str, **labels: str) -> object_pb2.Object:
    return codec.from_dict({
        "kind": "Workload",
        "metadata": {"name": name, "zone": ZONE, "workspace": workspace, "labels": labels},
        "spec": {"image": {"image": "dora/busybox"}, "config": {"cmd": "sleep 1"}},
    })


def user(*workspaces: str) -> object_pb2.Object:
    return codec.from_dict({
        "kind": "User", "metadata": {"name": "reader"},
        "spec": {"default": {"zone": ZONE, "workspace": MINE},
                 "resources": [{"kind": "Workload", "zone": ZONE, "workspace": w,
                                "role": "reader"} for w in workspaces]},
    })


# How late the apiserver's Workload cache sees each etcd change in these tests, as a
# loaded apiserver's would: a read that must see a write waits for it.
LAG = 0.05


class LaggingEtcd:
    """The apiserver's etcd client for its Workload cache, whose watch hands on each
    batch of changes ``LAG`` seconds late (everything else as it is)."""

    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd

    def __getattr__(self, name: str) -> Any:
        return getattr(self._etcd, name)

    async def watch(self, prefix: bytes, **options: Any) -> AsyncIterator[WatchBatch]:
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[tuple[float, WatchBatch]] = asyncio.Queue()

        async def receive() -> None:
            async for batch in self._etcd.watch(prefix, **options):
                arrived.put_nowait((loop.time(), batch))

        receiving = asyncio.create_task(receive())
        try:
            while True:
                at, batch = await arrived.get()
                await asyncio.sleep(at + LAG - loop.time())
                yield batch
        finally:
            receiving.cancel()


@pytest.fixture
async def apiserver(apiserver_config: Config) -> AsyncIterator[APIServer]:
    server = APIServer(apiserver_config)
    cache = server.cache["Workload"]
    cache._etcd = cast(Etcd, LaggingEtcd(cache._etcd))
    await server.start()
    yield server
    await server.stop(grace=0)


@pytest.fixture
async def admin(client: Client) -> Client:
    await client.apply(objects.new("Zone", ZONE))
    for workspace in (MINE, OTHER):
        await client.apply(objects.new("Workspace", workspace))
    await client.apply(codec.from_dict({
        "kind": "Role", "metadata": {"name": "reader"},
        "spec": {"permission": {"Workload": ["Get"]}},
    }))
    await client.apply(user(MINE))
    return client


@pytest.fixture
async def reader(admin: Client, apiserver: APIServer) -> AsyncIterator[Client]:
    token, _ = await admin.create_token("reader", MINE, "1")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token, timeout=10) as c:
        yield c


async def test_cached_get_and_list_equal_etcds(admin: Client) -> None:
    for index in range(5):
        await admin.apply(workload(f"w{index}", MINE if index % 2 else OTHER,
                                   tier="gold" if index < 3 else "tin"))
    fresh, version = await admin.list("Workload", zone=ZONE)
    cached = await admin.list_page("Workload", zone=ZONE, resource_version=version)
    assert list(cached.items) == fresh
    assert cached.resource_version >= version and cached.continue_token == ""
    for obj in fresh:
        meta = obj.metadata
        from_cache = await admin.get("Workload", meta.name, zone=ZONE, workspace=meta.workspace,
                                     resource_version=version)
        assert from_cache == obj
        assert from_cache == await admin.get("Workload", meta.name, zone=ZONE,
                                             workspace=meta.workspace)
    gold = await admin.list_page("Workload", zone=ZONE, label_selector="tier=gold",
                                 resource_version=version)
    # Key order: the workspace comes before the name.
    assert [o.metadata.name for o in gold.items] == ["w1", "w0", "w2"]
    mine = await admin.list_page("Workload", zone=ZONE, workspace=MINE,
                                 resource_version=version)
    assert [o.metadata.name for o in mine.items] == ["w1", "w3"]
    with pytest.raises(errors.NotFound):
        await admin.get("Workload", "nope", zone=ZONE, workspace=MINE, resource_version=version)


async def cached_names(reader: Client, admin: Client) -> list[str]:
    """The workloads ``reader`` lists from the cache, once it has seen every write."""
    _, version = await admin.list("Workload", zone=ZONE)
    page = await reader.list_page("Workload", zone=ZONE, resource_version=version)
    return [o.metadata.name for o in page.items]


async def test_cached_lists_follow_bindings_granted_and_taken_away(
    admin: Client, reader: Client
) -> None:
    await admin.apply(workload("a", MINE))
    await admin.apply(workload("b", OTHER))
    assert await cached_names(reader, admin) == ["a"]
    assert await cached_names(reader, admin) == ["a"]  # the kept rules, the same answer
    await admin.apply(user(MINE, OTHER))
    assert await cached_names(reader, admin) == ["a", "b"]
    _, version = await admin.list("Workload", zone=ZONE)
    got = await reader.get("Workload", "b", zone=ZONE, workspace=OTHER, resource_version=version)
    assert got.metadata.name == "b"
    await admin.apply(user(MINE))
    assert await cached_names(reader, admin) == ["a"]
    _, version = await admin.list("Workload", zone=ZONE)
    with pytest.raises(errors.Forbidden):
        await reader.get("Workload", "b", zone=ZONE, workspace=OTHER, resource_version=version)
    # The role itself changing counts too.
    await admin.apply(codec.from_dict({
        "kind": "Role", "metadata": {"name": "reader"},
        "spec": {"permission": {"Container": ["Get"]}},
    }))
    with pytest.raises(errors.Forbidden):
        await cached_names(reader, admin)


async def test_a_callers_new_defaults_count_at_once(admin: Client, reader: Client) -> None:
    """The authenticator keeps what a token comes to, but not past a change of its User."""
    await admin.apply(objects.new("Zone", "elsewhere"))
    await admin.apply(workload("a", MINE))
    assert (await reader.get("Workload", "a")).metadata.zone == ZONE
    moved = user(MINE)
    moved.user.spec.defaults.zone = "elsewhere"
    await admin.apply(moved)
    _, version = await admin.list("User")
    await admin.list_page("User", resource_version=version)  # the User cache has it
    with pytest.raises(errors.Forbidden, match="elsewhere"):
        await reader.get("Workload", "a")


async def test_a_selector_watch_sees_an_object_leave_its_selection(admin: Client) -> None:
    """A MODIFIED event reaches a selector that matched the object's previous labels
    (the cache takes them from the version it holds) and not one that matches neither."""
    _, version = await admin.list("Workload", zone=ZONE)
    stream = admin.watch("Workload", zone=ZONE, label_selector="tier=gold",
                         resource_version=version)
    obj = workload("w", MINE, tier="gold")
    for tier in ("gold", "tin", "lead"):
        obj.metadata.labels["tier"] = tier
        await admin.apply(obj)
    seen: list[tuple[int, str]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            async for event in stream:
                seen.append((event.type, event.object.metadata.labels["tier"]))
    await stream.aclose()  # type: ignore[attr-defined]
    assert seen == [(WatchEvent.ADDED, "gold"), (WatchEvent.MODIFIED, "tin")]


class RangeSpy:
    """Records the prefixes the apiserver reads from etcd by range (the real reads
    still happen): a List served from the watch cache reads none of its kind."""

    def __init__(self, apiserver: APIServer) -> None:
        self.etcd = apiserver.registry.etcd
        self.real = self.etcd.range
        self.prefixes: list[bytes] = []

    async def range(self, prefix: bytes, **kwargs: Any) -> Range:
        self.prefixes.append(prefix)
        return await self.real(prefix, **kwargs)

    def __enter__(self) -> RangeSpy:
        self.etcd.range = self.range  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.etcd.range


async def test_a_list_without_a_version_is_served_by_the_cache_page_by_page(
    admin: Client, apiserver: APIServer
) -> None:
    """Every page of a plain List (``doractl get``) comes from the watch cache, at one
    snapshot: what changes between pages (an update, a delete, a create) shows in
    none of them, each object comes once, and the label and scope filters hold."""
    for index in range(25):
        await admin.apply(workload(f"w{index:02d}", MINE if index % 2 else OTHER,
                                   tier="gold" if index % 3 == 0 else "tin"))
    with RangeSpy(apiserver) as spy:
        first = await admin.list_page("Workload", zone=ZONE, limit=10)
        assert len(first.items) == 10 and first.continue_token
        changed = workload("w00", OTHER, tier="lead")
        await admin.apply(changed)
        await admin.delete("Workload", "w01", zone=ZONE, workspace=MINE)
        await admin.apply(workload("w99", MINE))
        pages = [first]
        while pages[-1].continue_token:
            pages.append(await admin.list_page("Workload", zone=ZONE, limit=10,
                                               continue_token=pages[-1].continue_token))
        gold = await admin.list_page("Workload", zone=ZONE, label_selector="tier=gold",
                                     limit=3)
        mine, _ = await admin.list("Workload", zone=ZONE, workspace=MINE, page_size=4)
        assert spy.prefixes == [], "read from etcd, not from the cache"
    assert [len(p.items) for p in pages] == [10, 10, 5]
    assert {p.resource_version for p in pages} == {first.resource_version}
    items = [o for p in pages for o in p.items]
    assert sorted(o.metadata.name for o in items) == [f"w{i:02d}" for i in range(25)]
    w00 = next(o for o in items if o.metadata.name == "w00")
    assert w00.metadata.labels["tier"] == "gold", "the snapshot's version"
    assert len(gold.items) == 3 and gold.continue_token
    assert {o.metadata.labels["tier"] for o in gold.items} == {"gold"}
    assert "w00" not in [o.metadata.name for o in gold.items], "now lead"
    assert sorted(o.metadata.name for o in mine) == (
        [f"w{i:02d}" for i in range(3, 25, 2)] + ["w99"])


async def test_a_next_page_without_its_snapshot_reads_etcd_at_its_revision(
    admin: Client, apiserver: APIServer
) -> None:
    """Once the cache no longer keeps a List's snapshot (other Lists since, with
    writes between them), its next pages read etcd at the same revision: the same
    answer as the snapshot's."""
    for index in range(12):
        await admin.apply(workload(f"w{index:02d}", MINE))
    first = await admin.list_page("Workload", zone=ZONE, limit=5)
    for round_ in range(watchcache.SNAPSHOTS + 2):
        await admin.apply(workload(f"x{round_}", MINE))
        assert (await admin.list_page("Workload", zone=ZONE, limit=5)).continue_token
    with RangeSpy(apiserver) as spy:
        pages = [first]
        while pages[-1].continue_token:
            pages.append(await admin.list_page("Workload", zone=ZONE, limit=5,
                                               continue_token=pages[-1].continue_token))
        assert spy.prefixes, "the snapshot was kept: this test proves nothing"
    names = [o.metadata.name for p in pages for o in p.items]
    assert names == [f"w{i:02d}" for i in range(12)]
    assert {p.resource_version for p in pages} == {first.resource_version}


async def test_a_list_after_an_apply_always_holds_it(admin: Client) -> None:
    """A List never answers older than a write its caller saw acknowledged, while
    other writers keep the kind (and another kind) busy: the List waits for the
    cache to reach etcd's current revision."""
    stop = asyncio.Event()

    async def churn(prefix: str, kind: str) -> None:
        count = 0
        while not stop.is_set():
            obj = workload(f"{prefix}{count % 7}", OTHER, count=str(count))
            if kind == "Role":
                obj = codec.from_dict({
                    "kind": "Role", "metadata": {"name": f"{prefix}{count % 7}"},
                    "spec": {"permission": {"Workload": ["Get"] * (1 + count % 2)}}})
            await admin.apply(obj)
            count += 1

    writers = [asyncio.create_task(churn(f"busy{i}-", kind))
               for i, kind in enumerate(("Workload", "Workload", "Role"))]
    try:
        for index in range(40):
            name = f"acked{index:02d}"
            stored, _ = await admin.apply(workload(name, MINE, round=str(index)))
            version = stored.metadata.resource_version
            items, listed_at = await admin.list("Workload", zone=ZONE, workspace=MINE,
                                                page_size=7 if index % 2 else 500)
            found = {o.metadata.name: o for o in items}
            assert name in found, f"round {index}: the acknowledged write is missing"
            assert found[name].metadata.resource_version == version
            assert listed_at >= version
            if index:  # an update is seen too, not just a create
                updated = workload(f"acked{index - 1:02d}", MINE, round="again")
                stored, _ = await admin.apply(updated)
                page = await admin.list_page("Workload", zone=ZONE, workspace=MINE,
                                             label_selector="round=again")
                assert stored.metadata.resource_version in {
                    o.metadata.resource_version for o in page.items}
    finally:
        stop.set()
        await asyncio.gather(*writers)
