"""Writes that start from a watch cache behind etcd: the registry must catch the
stale read with the transaction's revision check and read etcd again, so no
write is lost, refused or skipped because the cache was late."""

from __future__ import annotations

import pytest

from dora.api import errors, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.apiserver import admission
from dora.apiserver.registry import Registry
from dora.apiserver.storage import Etcd

REF = Ref("Workload", "default", "default", "job")


class LateCache:
    """A cache that answers with whatever it was last told, however old."""

    def __init__(self) -> None:
        self.objects: dict[Ref, object_pb2.Object] = {}

    def __call__(self, ref: Ref, key: bytes) -> object_pb2.Object | None:
        return self.objects.get(ref)


@pytest.fixture
async def stores(etcd: Etcd) -> tuple[Registry, LateCache]:
    plain = Registry(etcd=etcd, admit=admission.admitter())
    for kind in ("Zone", "Workspace"):
        await plain.apply(objects.new(kind, "default"))
    late = LateCache()
    return Registry(etcd=etcd, admit=admission.admitter(), cached=late), late


def job(image: str) -> object_pb2.Object:
    obj = objects.new("Workload", "job", zone="default", workspace="default")
    obj.workload.spec.image.image = image
    return obj


def with_status(obj: object_pb2.Object, ready: int) -> object_pb2.Object:
    changed = object_pb2.Object()
    changed.CopyFrom(obj)
    changed.workload.status.ready_replicas = ready
    return changed


async def test_status_on_a_stale_cache_keeps_the_newer_spec(
        stores: tuple[Registry, LateCache]) -> None:
    registry, late = stores
    old, _ = await registry.apply(job("v1"))
    late.objects[REF] = old
    newer, _ = await registry.apply(job("v2"))  # the cache has not seen it
    stored = await registry.update_status(with_status(objects.new(
        "Workload", "job", zone="default", workspace="default"), 1))
    assert stored.workload.spec.image.image == "v2"
    assert stored.workload.status.ready_replicas == 1
    assert stored.metadata.resource_version > newer.metadata.resource_version
    assert (await registry.get(REF)).workload.status.ready_replicas == 1


async def test_status_with_the_current_version_passes_a_stale_cache(
        stores: tuple[Registry, LateCache]) -> None:
    registry, late = stores
    old, _ = await registry.apply(job("v1"))
    late.objects[REF] = old
    newer, _ = await registry.apply(job("v2"))
    request = with_status(newer, 1)
    stored = await registry.update_status(request)
    assert stored.workload.status.ready_replicas == 1
    stale = with_status(old, 2)  # a real conflict is still one
    with pytest.raises(errors.Conflict):
        await registry.update_status(stale)


async def test_status_the_cache_already_shows_is_still_written(
        stores: tuple[Registry, LateCache]) -> None:
    registry, late = stores
    created, _ = await registry.apply(job("v1"))
    running = await registry.update_status(with_status(created, 1))
    late.objects[REF] = running
    await registry.update_status(with_status(running, 3))  # the cache missed it
    unconditional = with_status(created, 1)
    unconditional.metadata.resource_version = 0
    stored = await registry.update_status(unconditional)
    assert stored.workload.status.ready_replicas == 1
    assert (await registry.get(REF)).workload.status.ready_replicas == 1


async def test_status_of_an_object_the_cache_has_not_seen_yet(
        stores: tuple[Registry, LateCache]) -> None:
    registry, _ = stores
    created, _ = await registry.apply(job("v1"))
    stored = await registry.update_status(with_status(created, 1))
    assert stored.workload.status.ready_replicas == 1
    with pytest.raises(errors.NotFound):
        await registry.update_status(with_status(objects.new(
            "Workload", "gone", zone="default", workspace="default"), 1))
