"""Leases: a Lease object lives as long as its holder keeps the etcd lease alive."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from dora.api import errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from tests.eventually import eventually

pytestmark = pytest.mark.usefixtures("default_scope")


def lease(name: str, holder: str, lease_id: int, ttl: int) -> object_pb2.Object:
    obj = objects.new("Lease", name)
    obj.lease.spec.holder = holder
    obj.lease.spec.lease_id = lease_id
    obj.lease.spec.ttl_seconds = ttl
    return obj


async def test_a_lease_kept_alive_stays_and_goes_when_its_holder_stops(client: Client) -> None:
    lease_id, ttl = await client.grant_lease(2)
    assert ttl == 2
    created, _ = await client.apply(lease("node-a", "a", lease_id, ttl), create_only=True)

    async def keep() -> None:
        async for remaining in client.keep_lease_alive(lease_id, every=0.5):
            assert remaining > 0

    keeper = asyncio.create_task(keep())
    await asyncio.sleep(3.5)
    assert (await client.get("Lease", "node-a")).lease.spec.holder == "a"

    stream = client.watch("Lease", resource_version=created.metadata.resource_version)
    keeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await keeper
    async with asyncio.timeout(10):
        event = await anext(aiter(stream))
    assert event.type == WatchEvent.DELETED
    assert event.object.metadata.name == "node-a"
    with pytest.raises(errors.NotFound):
        await client.get("Lease", "node-a")
    async for remaining in client.keep_lease_alive(lease_id, every=0.5):
        assert remaining == 0, "an expired lease reports 0 left"
        break


async def test_only_one_holder_can_create_a_lease(client: Client) -> None:
    first, _ = await client.grant_lease(10)
    second, _ = await client.grant_lease(10)
    await client.apply(lease("leader", "one", first, 10), create_only=True)
    with pytest.raises(errors.AlreadyExists):
        await client.apply(lease("leader", "two", second, 10), create_only=True)
    await client.revoke_lease(first)

    async def gone() -> bool:
        try:
            await client.get("Lease", "leader")
        except errors.NotFound:
            return True
        return False

    await eventually(gone, what="the Lease leader gone with its lease", within=5)
    await client.apply(lease("leader", "two", second, 10), create_only=True)


async def test_bad_leases_are_rejected(client: Client) -> None:
    with pytest.raises(errors.Invalid, match="ttlSeconds"):
        await client.grant_lease(0)
    with pytest.raises(errors.Invalid, match="leaseId"):
        await client.apply(lease("x", "me", 0, 5))
    with pytest.raises(errors.NotFound, match="lease"):
        await client.apply(lease("x", "me", 123456789, 5))
