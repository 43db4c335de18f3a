"""The quota gate the scheduler asks before it places a container.

Quotas are enforced where placements are decided, not at the apiserver: the
scheduler of a zone is one leader that chooses one container at a time under a
lock, so asking the gate inside that lock makes the caps hold exactly, however
many applies arrive at once and however many apiserver replicas take them. A
container over a cap is still created; it waits, Pending with the condition
``Scheduled=False`` reason ``QuotaExceeded`` and the gate's message, and is
considered again whenever a placed container frees what it held (the scheduler
already requeues the waiting ones then) or a Quota changes.

What counts as used is what the scheduler counts on nodes: the containers that
hold resources (bound or reserved, not Exited/Failed/Lost, also while being
deleted) and the placements it has made that the cache does not show yet. The
gate keeps that tally up to date from every change the Container informer sees
(a handler, which runs also while this replica is not leading), so a decision
costs the few assumed placements, not a pass over the zone's containers. A zone
without Quotas costs nothing: the gate answers before it looks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dora.api import kinds, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers.queue.quota import Cap, Tally, Use, refusal
from dora.controllers.scheduler.filters import GPU
from dora.controllers.scheduler.snapshot import Placement, holds_resources
from dora.runtime.cache import Cache, Delta

QUOTA_EXCEEDED = "QuotaExceeded"


def cap_of(quota: object_pb2.Object, *, users: Mapping[str, object_pb2.Object]) -> Cap:
    spec = quota.quota.spec
    workspaces: frozenset[str] | None = None
    if spec.workspace:
        workspaces = frozenset({spec.workspace})
    elif spec.user:
        user = users.get(spec.user)
        default = user.user.spec.defaults.workspace if user is not None else ""
        workspaces = frozenset({spec.user, default} - {""})
    return Cap(
        name=quota.metadata.name,
        workspaces=workspaces,
        gpus=tuple((frozenset(g.product_name), g.count) for g in spec.gpu),
        millicores=spec.cpu.millicores if spec.cpu.HasField("millicores") else None,
        containers=spec.containers if spec.HasField("containers") else None,
    )


def use_of(container: object_pb2.Object) -> Use:
    spec = container.container.spec
    return Use(workspace=container.metadata.workspace, gpus=len(spec.gpus),
               gpu_product=spec.gpus[0].product_name if spec.gpus else "",
               millicores=spec.cpu_millicores)


def use_of_placement(placement: Placement) -> Use:
    return Use(workspace=placement.workload.partition("/")[0], gpus=len(placement.gpus),
               gpu_product=placement.gpus[0].product if placement.gpus else "",
               millicores=placement.cpu_millicores)


class QuotaGate:
    def __init__(self, *, cache: Cache) -> None:
        self.cache = cache
        self.tally = Tally()
        # What each container that holds resources holds, as counted in the tally.
        self.placed: dict[Ref, Use] = {}
        # ``caps()`` until a Quota or a User changes (the stores' change counts then).
        self._caps: tuple[tuple[int, int, int, int], list[Cap]] | None = None

    def on_container(self, delta: Delta) -> None:
        """Keep the tally: what the container held before out, what it holds now in."""
        ref = objects.ref_of(delta.object)
        before = self.placed.pop(ref, None)
        if before is not None:
            self.tally.remove(before)
        if delta.new is not None and holds_resources(delta.new):
            now = use_of(delta.new)
            self.placed[ref] = now
            self.tally.add(now)

    @staticmethod
    def quota_changed(delta: Delta) -> bool:
        old, new = delta.old, delta.new
        return old is None or new is None or old.quota.spec != new.quota.spec

    def caps(self) -> list[Cap]:
        """The zone's caps, read again only once a Quota or a User changed (every
        decision asks; the answer changes when an admin edits one)."""
        quota_store, user_store = self.cache.store(kinds.QUOTA), self.cache.store(kinds.USER)
        seen = (id(quota_store), quota_store.changes, id(user_store), user_store.changes)
        if self._caps is not None and self._caps[0] == seen:
            return self._caps[1]
        quotas = list(quota_store)
        users = {u.metadata.name: u for u in user_store} if quotas else {}
        caps = [cap_of(q, users=users) for q in quotas]
        self._caps = (seen, caps)
        return caps

    def refusal(self, *, key: Ref, container: object_pb2.Object, gpus: Iterable[GPU],
                millicores: int, assumed: Mapping[Ref, Placement]) -> str | None:
        """Why ``container`` may not take ``gpus`` and ``millicores`` now, or None."""
        caps = self.caps()
        if not caps:
            return None
        chosen = tuple(gpus)
        use = Use(workspace=container.metadata.workspace, gpus=len(chosen),
                  gpu_product=chosen[0].product if chosen else "", millicores=millicores)
        covering = [c for c in caps if c.covers(use.workspace)]
        if not covering:
            return None
        # The tally as it is once the assumed placements are laid over it (each counted
        # once) and without the container asking; put back as it was afterwards.
        removed = [self.placed[r] for r in {key, *assumed} if r in self.placed]
        added = [use_of_placement(p) for r, p in assumed.items() if r != key]
        for held in removed:
            self.tally.remove(held)
        for held in added:
            self.tally.add(held)
        try:
            return refusal(covering, self.tally, use)
        finally:
            for held in added:
                self.tally.remove(held)
            for held in removed:
                self.tally.add(held)
