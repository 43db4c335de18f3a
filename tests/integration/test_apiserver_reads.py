"""Reads served from the watch cache: the same objects as etcd's, sent as the cache
serialized them, and filtered by the caller's permissions as they are now (a role
granted or taken away counts at once, although what a user's roles come to is kept
between calls)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from dora.api import codec, errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer

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
