"""The one way a controller writes a status: conditional, retried, skipped when unchanged.

``write_status(client, obj, mutate)`` applies ``mutate`` to a copy of ``obj``
(as the cache holds it) and writes the status it produced with ``obj``'s
resourceVersion as precondition: a status written meanwhile by someone else
(another controller's condition, the agent's phase) is never overwritten with
an older one. On a conflict it reads the object again and applies ``mutate``
anew to the fresh copy (client-go's ``RetryOnConflict``). When ``mutate``
changes nothing, nothing is written, so a controller's own status write does not
wake it forever. A ``mutate`` is therefore a function of the object it is given,
not of what the caller read before.

With ``attempts=1`` a conflict is raised at once: a controller that claims work
in its status (the task controller) must plan again from the fresh object.
"""

from __future__ import annotations

from collections.abc import Callable

from dora.api import errors, objects
from dora.api.client import ResourceClient
from dora.api.v1 import object_pb2
from dora.runtime.cache import clone

Object = object_pb2.Object
# Changes the status of the copy it is given (its return value is ignored).
Mutation = Callable[[Object], object]


def status_of(obj: Object) -> object:
    return objects.body(obj).status  # type: ignore[attr-defined]


async def write_status(client: ResourceClient, obj: Object, mutate: Mutation, *,
                       attempts: int = 5) -> Object | None:
    """Write the status ``mutate`` makes of ``obj``; the object as written (or as found,
    when there was nothing to change), None when it is gone or another incarnation.
    Raises ``errors.Conflict`` when it kept changing for ``attempts`` tries."""
    uid, current = obj.metadata.uid, obj
    for attempt in range(1, attempts + 1):
        updated = clone(current)
        mutate(updated)
        if status_of(updated) == status_of(current):
            return current
        meta = current.metadata
        request = objects.new(current.kind, meta.name, zone=meta.zone,
                              workspace=meta.workspace)
        request.metadata.resource_version = meta.resource_version
        objects.body(request).status.CopyFrom(status_of(updated))  # type: ignore[attr-defined]
        try:
            return await client.update_status(request)
        except errors.NotFound:
            return None
        except errors.Conflict:
            if attempt == attempts:
                raise
        try:
            current = await client.get(current.kind, meta.name, zone=meta.zone,
                                       workspace=meta.workspace)
        except errors.NotFound:
            return None
        if uid and current.metadata.uid != uid:
            return None
    raise errors.Conflict(f"{objects.ref_of(obj)}: its status kept changing")
