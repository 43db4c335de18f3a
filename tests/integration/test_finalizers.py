"""``dora.api.finalizers``: one finalizer added or removed by conditional Applies."""

from __future__ import annotations

import pytest

from dora.api import finalizers, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2

pytestmark = pytest.mark.usefixtures("default_scope")


def volume(name: str) -> object_pb2.Object:
    obj = objects.new("Volume", name, zone="default", workspace="default")
    obj.volume.spec.storage = "local"
    return obj


async def test_added_once_kept_with_others_and_removed(client: Client) -> None:
    stored, _ = await client.apply(volume("v"))
    assert await finalizers.change(client, stored, "a.io/one", add=True)
    stale = stored  # its resourceVersion is behind now: the change reads again
    assert await finalizers.change(client, stale, "b.io/two", add=True)
    assert await finalizers.change(client, stale, "b.io/two", add=True)
    current = await client.get("Volume", "v", workspace="default", zone="default")
    assert list(current.metadata.finalizers) == ["a.io/one", "b.io/two"]
    older = current
    assert await finalizers.change(client, current, "b.io/two", add=False)
    assert await finalizers.change(client, older, "a.io/one", add=False)
    current = await client.get("Volume", "v", workspace="default", zone="default")
    assert list(current.metadata.finalizers) == []


async def test_never_added_to_an_object_being_deleted_which_goes_once_released(
    client: Client,
) -> None:
    stored, _ = await client.apply(volume("w"))
    assert await finalizers.change(client, stored, "a.io/one", add=True)
    await client.delete("Volume", "w", zone="default", workspace="default")
    deleting = await client.get("Volume", "w", workspace="default", zone="default")
    assert deleting.metadata.HasField("deletion_timestamp")
    assert not await finalizers.change(client, deleting, "b.io/two", add=True)
    assert await finalizers.change(client, deleting, "a.io/one", add=False)
    assert [o.metadata.name for o in (await client.list("Volume"))[0]] == []


async def test_another_incarnation_is_left_alone(client: Client) -> None:
    old, _ = await client.apply(volume("x"))
    await client.delete("Volume", "x", zone="default", workspace="default")
    await client.apply(volume("x"))
    assert not await finalizers.change(client, old, "a.io/one", add=True)
    current = await client.get("Volume", "x", workspace="default", zone="default")
    assert list(current.metadata.finalizers) == []
