"""The garbage collector: an object whose owners are all gone is deleted.

An object names its owners in ``metadata.ownerReferences`` (kind, name, uid): a
Workload's Containers, versions and Events, a Task's job Containers and their
Events. Deleting an owner deletes nothing else in the apiserver's request path:
the owner goes at once, and this controller deletes what it owned right after
(Kubernetes' background cascading deletion). An owner that has finalizers counts
as gone from the moment its deletion starts (``deletionTimestamp``), as the
README says: what it owns is deleted with it, not after its finalizers.

How it finds them: every kind that has a zone and a workspace (the kinds that
can be owned) is cached with an owner index (owner uid -> the objects naming
it). When an object is deleted, or its deletion starts, the objects filed under
its uid are looked at; so is an object that appears with owners, or whose owners
change (a create that raced its owner's deletion, a dependent of an owner
deleted while no controller ran), and every object at each resync and when a
replica starts to lead.

Looking at an object: an owner is alive when an object of its kind and name,
in the dependent's zone and workspace (those the owner's kind has), has its uid
and is not being deleted. The cache says so for most; an owner the cache does
not show alive is asked of the apiserver before anything is deleted (the
owner's informer may be behind the dependent's). An object with at least one
live owner stays; one whose owners are all gone is deleted, conditionally on
the version that was looked at. A reference to a kind this apiserver does not
know is never taken as gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from dora.api import errors, kinds, objects
from dora.api.client import ResourceClient
from dora.api.objects import Ref
from dora.api.v1 import meta_pb2, object_pb2
from dora.runtime import reconcile, registry
from dora.runtime.cache import Cache, Event, by_owner
from dora.runtime.handlers import Watch, own_key
from dora.runtime.reconcile import DONE, Result

log = reconcile.logger(__name__)

# The kinds an object of which may be owned, and is watched: zoned and workspaced.
OWNED_KINDS = tuple(k.name for k in kinds.KINDS if k.zoned and k.workspaced)
OWNER_INDEX = "gc-owner"


class GarbageCollector:
    name = "gc"

    def __init__(self, *, client: ResourceClient, cache: Cache) -> None:
        self.client = client
        self.cache = cache

    @staticmethod
    def build(setup: registry.Setup) -> GarbageCollector:
        return GarbageCollector(client=setup.client, cache=setup.cache)

    def keys(self, event: Event) -> Iterable[Ref]:
        """The dependent itself when it appears with owners or they change (or at a
        resync); an owner's dependents when its deletion starts or it is gone."""
        old, new = event.old, event.new
        if new is not None and new.metadata.owner_references and (
                old is None or old is new
                or old.metadata.owner_references != new.metadata.owner_references):
            yield from own_key(self, event)
        going = new is None or (new.metadata.HasField("deletion_timestamp") and (
            old is None or old is new or not old.metadata.HasField("deletion_timestamp")))
        if going:
            uid = event.object.metadata.uid
            for kind in OWNED_KINDS:
                for dependent in self.cache.store(kind).by_index(OWNER_INDEX, uid):
                    yield objects.ref_of(dependent)

    async def reconcile(self, *, key: Ref) -> Result:
        obj = self.cache.store(key.kind).get(key)
        if obj is None or obj.metadata.HasField("deletion_timestamp"):
            return DONE
        owners = list(obj.metadata.owner_references)
        if not owners or any(self._cached_alive(obj, owner) for owner in owners):
            return DONE
        for owner in owners:
            if await self._alive(obj, owner):
                return DONE
        log.info("%s: its owner %s is gone; deleting it", key,
                 ", ".join(f"{o.kind}/{o.name}" for o in owners))
        with contextlib.suppress(errors.NotFound):
            await self.client.delete(key.kind, key.name, zone=key.zone,
                                     workspace=key.workspace,
                                     resource_version=obj.metadata.resource_version)
        return DONE

    def _owner_ref(self, obj: object_pb2.Object,
                   owner: meta_pb2.OwnerReference) -> Ref | None:
        """Where ``owner`` is: in ``obj``'s zone and workspace, as far as its kind has
        them; None for a kind this apiserver does not know."""
        try:
            kind = kinds.get(owner.kind)
        except errors.DoraError:
            return None
        meta = obj.metadata
        return Ref(kind.name, meta.zone if kind.zoned else "",
                   meta.workspace if kind.workspaced else "", owner.name)

    def _cached_alive(self, obj: object_pb2.Object,
                      owner: meta_pb2.OwnerReference) -> bool:
        ref = self._owner_ref(obj, owner)
        if ref is None:
            return True
        if ref.kind not in self.cache:
            return False
        return _is(self.cache.store(ref.kind).get(ref), owner.uid)

    async def _alive(self, obj: object_pb2.Object, owner: meta_pb2.OwnerReference) -> bool:
        """Whether ``owner`` is alive as the apiserver has it now."""
        ref = self._owner_ref(obj, owner)
        if ref is None:
            return True
        try:
            found = await self.client.get(ref.kind, ref.name, zone=ref.zone,
                                          workspace=ref.workspace)
        except errors.NotFound:
            return False
        return _is(found, owner.uid)


def _is(found: object_pb2.Object | None, uid: str) -> bool:
    """Whether ``found`` is the live object of ``uid``."""
    return (found is not None and found.metadata.uid == uid
            and not found.metadata.HasField("deletion_timestamp"))


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="gc",
    help="deletes what names a deleted owner (background cascading deletion)",
    build=GarbageCollector.build,
    watches=[Watch(kind, GarbageCollector.keys) for kind in OWNED_KINDS],
    indexes={kind: {OWNER_INDEX: by_owner} for kind in OWNED_KINDS},
    workers="workers",
    order=90,
))
