"""Who pays for what runs: the link from a user's Usercredit to the objects it pays for.

The credit controller writes, on each user's Usercredit, whether their budget is
spent (``status.exhausted``) and which workspaces their credit pays for
(``status.workspaces``). The workload and task controllers each decide that what
they own runs nothing while its payer is out of credit; both follow the same link,
kept here: an index of Usercredits by the workspaces they pay for, the keys a
Usercredit change concerns, and the spent credit (if any) behind an object.
"""

from __future__ import annotations

from dora.api import kinds, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.runtime.cache import Cache, Delta

# Usercredits by the workspaces they pay for.
PAID_INDEX = "paid-workspaces"
# The owned kind's objects by workspace (each controller indexes its own kind).
WORKSPACE_INDEX = "workspace"


def paid_workspaces(obj: object_pb2.Object) -> list[str]:
    return list(obj.usercredit.status.workspaces)


def by_workspace(obj: object_pb2.Object) -> list[str]:
    return [obj.metadata.workspace]


def keys_paid_by(delta: Delta, *, cache: Cache, kind: str) -> list[Ref]:
    """The objects of ``kind`` a Usercredit change concerns: those in the workspaces it
    pays (or paid) for, when its exhaustion or those workspaces changed."""
    old, new = delta.old, delta.new
    if (old is not None and new is not None
            and old.usercredit.status.exhausted == new.usercredit.status.exhausted
            and old.usercredit.status.workspaces == new.usercredit.status.workspaces):
        return []
    zone = delta.object.metadata.zone
    workspaces = {ws for o in (old, new) if o is not None for ws in o.usercredit.status.workspaces}
    return [objects.ref_of(o) for ws in workspaces
            for o in cache.store(kind).by_index(WORKSPACE_INDEX, ws)
            if o.metadata.zone == zone]


def spent_credit(cache: Cache, obj: object_pb2.Object) -> object_pb2.Object | None:
    """The spent Usercredit that pays for ``obj`` (in its zone), or None."""
    meta = obj.metadata
    for credit in cache.store(kinds.USERCREDIT).by_index(PAID_INDEX, meta.workspace):
        if credit.metadata.zone == meta.zone and credit.usercredit.status.exhausted:
            return credit
    return None
