"""Adding and removing one finalizer, safely, from any component.

A finalizer is written with a conditional Apply (the object's resourceVersion
travels with it, see ``dora/apiserver/registry.py``), so a concurrent writer's
change is never lost: on a conflict the object is read again and the change
retried. The object of the same name with another uid is someone else's and is
left alone, as is a deleted one. A finalizer is never added to an object being
deleted: it would hold back a deletion that has already been decided.
"""

from __future__ import annotations

from dora.api import errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2


async def change(client: Client, obj: object_pb2.Object, finalizer: str, *, add: bool,
                 attempts: int = 8) -> bool:
    """Make ``finalizer`` present (``add``) or absent on ``obj``.

    Judged first on ``obj`` as given (what the caller's cache holds): when it already
    is so, nothing is written. A write that finds the object moved on reads it again
    and retries. True when done; False when the object is gone or is another
    incarnation. Raises ``errors.Conflict`` when it kept changing for ``attempts``
    tries.
    """
    uid, current = obj.metadata.uid, obj
    for _ in range(attempts):
        meta = current.metadata
        if (finalizer in meta.finalizers) == add:
            return True
        if add and meta.HasField("deletion_timestamp"):
            return False
        updated = object_pb2.Object()
        updated.CopyFrom(current)
        kept = [f for f in meta.finalizers if f != finalizer]
        del updated.metadata.finalizers[:]
        updated.metadata.finalizers.extend([*kept, finalizer] if add else kept)
        body = objects.body(updated)
        if "status" in body.DESCRIPTOR.fields_by_name:
            body.ClearField("status")
        try:
            await client.apply(updated)
            return True
        except errors.Conflict:
            pass
        except errors.NotFound:
            return False
        try:
            current = await client.get(current.kind, meta.name, zone=meta.zone,
                                       workspace=meta.workspace)
        except errors.NotFound:
            return False
        if current.metadata.uid != uid:
            return False
    raise errors.Conflict(f"{objects.ref_of(obj)}: its finalizers kept changing")
