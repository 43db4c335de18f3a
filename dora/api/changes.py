"""One change to a stored object, made safely by any component.

The change is applied conditionally (the object's resourceVersion travels with
it, see ``dora/apiserver/registry.py``), so a concurrent writer's change is never
lost: on a conflict the object is read again and the change made anew on it. The
object of the same name with another uid is someone else's and is left alone, as
is a deleted one.
"""

from __future__ import annotations

from collections.abc import Callable

from dora.api import errors, objects
from dora.api.client import ResourceClient
from dora.api.v1 import object_pb2

# Makes the change on the copy it is given; False when there is nothing to change.
Edit = Callable[[object_pb2.Object], bool]


async def apply_change(client: ResourceClient, obj: object_pb2.Object, edit: Edit, *,
                       what: str = "it", attempts: int = 8) -> object_pb2.Object | None:
    """Apply ``edit`` to ``obj`` (as the caller's cache holds it), again on a fresh
    read after each conflict.

    The object as written, or as found when ``edit`` had nothing to change; None
    when it is gone or is another incarnation. Raises ``errors.Conflict`` naming
    ``what`` when it kept changing for ``attempts`` tries.
    """
    uid, current = obj.metadata.uid, obj
    for _ in range(attempts):
        updated = object_pb2.Object()
        updated.CopyFrom(current)
        if not edit(updated):
            return current
        body = objects.body(updated)
        if "status" in body.DESCRIPTOR.fields_by_name:
            body.ClearField("status")
        try:
            written, _ = await client.apply(updated)
            return written
        except errors.Conflict:
            pass
        except errors.NotFound:
            return None
        meta = current.metadata
        try:
            current = await client.get(current.kind, meta.name, zone=meta.zone,
                                       workspace=meta.workspace)
        except errors.NotFound:
            return None
        if current.metadata.uid != uid:
            return None
    raise errors.Conflict(f"{objects.ref_of(obj)}: {what} kept changing")
