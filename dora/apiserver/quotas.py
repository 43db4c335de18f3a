"""``Quota.spec.containers`` at creation: how many containers may exist, running or waiting.

The GPU and CPU caps of a Quota bound what is *placed* (the scheduler's gate,
``dora.controllers.queue.gate``); a waiting container holds nothing, so without a
bound on how many may wait, a workload of a million replicas would still fill
etcd. ``spec.containers`` bounds the containers that exist in the Quota's scope
and are not finished (not Exited, Failed or Lost): a create beyond it is
``RESOURCE_EXHAUSTED`` naming the Quota, and the workload controller says so in
a ``QuotaExceeded`` event and tries again later, as for the workspace's object
count. Changes and deletes are never refused.

Counts come from the watch cache. So that two creates at the same instant do not
both see room for one, the creates a cap covers are made one at a time in this
apiserver (a lock per zone), and each waits until the cache shows its write
before the next one counts. Several apiserver replicas may each let one through
at the same instant: the cap holds within one replica, and across N within N-1.
A zone with no such Quota takes no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from dora.api import errors
from dora.api.objects import Ref
from dora.apiserver.auth.authorizer import Authorizer
from dora.apiserver.watchcache import WatchCache

FINISHED = frozenset({"Exited", "Failed", "Lost"})


@dataclass
class Ticket:
    """What the guarded create wrote (its resourceVersion), for the wait after it."""

    revision: int = 0


class ContainerQuotas:
    def __init__(self, *, cache: WatchCache, authz: Authorizer) -> None:
        self.cache = cache
        self.authz = authz
        self._locks: dict[str, asyncio.Lock] = {}

    def _caps(self, ref: Ref) -> list[tuple[str, int, frozenset[str] | None]]:
        """(name, cap, workspaces) of the zone's Quotas with ``containers`` that cover
        ``ref``'s workspace; workspaces None: the whole zone."""
        found = []
        for quota in self.cache["Quota"].items():
            spec = quota.quota.spec
            if quota.metadata.zone != ref.zone or not spec.HasField("containers"):
                continue
            workspaces: frozenset[str] | None = None
            if spec.workspace:
                workspaces = frozenset({spec.workspace})
            elif spec.user:
                user = self.authz.user(spec.user)
                default = user.user.spec.defaults.workspace if user is not None else ""
                workspaces = frozenset({spec.user, default} - {""})
            if workspaces is None or ref.workspace in workspaces:
                found.append((quota.metadata.name, spec.containers, workspaces))
        return found

    def _live(self, zone: str, workspaces: frozenset[str] | None) -> int:
        return sum(1 for c in self.cache["Container"].items()
                   if c.metadata.zone == zone
                   and (workspaces is None or c.metadata.workspace in workspaces)
                   and c.container.status.phase not in FINISHED)

    @contextlib.asynccontextmanager
    async def admitting(self, ref: Ref, *, creating: bool) -> AsyncIterator[Ticket]:
        """Around the write of ``ref``: refuses a create over a cap; the body sets the
        ticket's revision, which the next create waits for the cache to show."""
        ticket = Ticket()
        if ref.kind != "Container" or not creating or not self._caps(ref):
            yield ticket
            return
        lock = self._locks.setdefault(ref.zone, asyncio.Lock())
        async with lock:
            for name, cap, workspaces in self._caps(ref):
                live = self._live(ref.zone, workspaces)
                if live >= cap:
                    raise errors.Exhausted(
                        f"quota {name}: {live} of {cap} containers exist (running or "
                        f"waiting) in {_scope(workspaces)} of zone {ref.zone!r}; one must "
                        "finish or go first")
            yield ticket
            if ticket.revision:
                await self.cache["Container"].caught_up(ticket.revision, within=5.0)


def _scope(workspaces: frozenset[str] | None) -> str:
    if workspaces is None:
        return "every workspace"
    return "workspace " + ", ".join(repr(w) for w in sorted(workspaces))
