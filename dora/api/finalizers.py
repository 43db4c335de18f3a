"""Adding and removing one finalizer, safely, from any component.

A change like any other (``changes.apply_change``: conditional, retried on a
fresh read, never onto another incarnation). A finalizer is never added to an
object being deleted: it would hold back a deletion that has already been decided.
"""

from __future__ import annotations

from dora.api import changes
from dora.api.client import ResourceClient
from dora.api.v1 import object_pb2


async def change(client: ResourceClient, obj: object_pb2.Object, finalizer: str, *, add: bool,
                 attempts: int = 8) -> bool:
    """Make ``finalizer`` present (``add``) or absent on ``obj``.

    Judged first on ``obj`` as given (what the caller's cache holds): when it already
    is so, nothing is written. True when done; False when the object is gone, is
    another incarnation, or (to add) is being deleted. Raises ``errors.Conflict``
    when it kept changing for ``attempts`` tries.
    """

    wrote = False  # whether the last edit changed something: then it was written

    def edit(updated: object_pb2.Object) -> bool:
        nonlocal wrote
        meta = updated.metadata
        wrote = (finalizer in meta.finalizers) != add and not (
            add and meta.HasField("deletion_timestamp"))
        if wrote:
            kept = [f for f in meta.finalizers if f != finalizer]
            del meta.finalizers[:]
            meta.finalizers.extend([*kept, finalizer] if add else kept)
        return wrote

    result = await changes.apply_change(client, obj, edit, what="its finalizers",
                                        attempts=attempts)
    # Not the written object's finalizers: removing the last one of an object being
    # deleted deletes it, and the answer is the object as it was.
    return result is not None and (wrote or (finalizer in result.metadata.finalizers) == add)
