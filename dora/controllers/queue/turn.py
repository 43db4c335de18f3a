"""Whose turn it is: the order gate the scheduler asks before it places a container.

The scheduler reconciles pending containers in no particular order (many workers,
keys requeued in bursts). So that the best-ranked container (``order``: priority,
then fair share) is the one that takes a free GPU, the scheduler asks, under its
placement lock and once it has found a node for container P: is a pending
container *of the same shape* (same GPUs, products, CPU, ports: it would fit
where P fits) ranked ahead of P, and not itself held back by a quota? Then P
yields (its condition says ``Queued`` and who goes first) and looks again a
moment later, while the one ahead takes the place.

Pending containers are kept by class, ``shape|priority|workspace`` (from every
change the Container informer sees), and the classes by shape, so the question
costs a look at the few classes of that shape (at most its priorities times its
accounts), not at every pending container: a zone where all pending containers
share one priority and one account (a large Task) pays one dictionary lookup per
placement. Nothing in a decision grows with the pending or placed containers:
each container's class is filed when it changes, each workspace's account and
recent use are kept until a User changes or use is observed again.

Use is observed every ``observe_every`` seconds (a background task of the
manager) from the quota gate's per-workspace tally and the nodes' capacity (kept
until a Node changes), so an observation costs the workspaces, not the placed
containers. It lives in the leader's memory: a new leader starts everyone at
zero recent use. ``bench/scheduler.py``'s ``queue_cost`` measures the price.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from dora.api import kinds, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers.queue import gate as quota_gate
from dora.controllers.queue.order import FairShare, InUse
from dora.controllers.scheduler.filters import GPU
from dora.controllers.scheduler.snapshot import Placement, request_of
from dora.runtime.cache import Cache, Delta

QUEUED = "Queued"
DEFAULT_WORKSPACE_INDEX = "queue-default-workspace"
# How long a container that yielded waits before it looks again (seconds).
RETRY_QUEUED = 1.0


@dataclass(frozen=True)
class Ahead:
    """Why a container yields, and one container of the class that goes first (the
    scheduler looks at it at once, so the place does not wait for its retry)."""

    message: str
    first: Ref


def shape_of(container: object_pb2.Object) -> str:
    r = request_of(container)
    return (f"{r.gpu_count}:{','.join(sorted(r.gpu_products))}:{r.cpu_millicores}:"
            f"{','.join(sorted(r.cpu_products))}:{r.node_ports}")


def created(obj: object_pb2.Object) -> float:
    return obj.metadata.creation_timestamp.ToNanoseconds() / 1e9


def by_class(obj: object_pb2.Object) -> list[str]:
    """A pending Container (no node, not being deleted) under ``shape|priority|workspace``.
    A gang's replica is not in the queue's turns: it waits for room for its whole gang
    and holds nothing meanwhile, so no container yields to it (no reservation)."""
    if (obj.container.spec.node_name or obj.metadata.HasField("deletion_timestamp")
            or obj.container.spec.template.replica.gang):
        return []
    priority = obj.container.spec.template.priority
    return [f"{shape_of(obj)}|{priority}|{obj.metadata.workspace}"]


def by_default_workspace(obj: object_pb2.Object) -> list[str]:
    workspace = obj.user.spec.defaults.workspace
    return [workspace] if workspace else []


class Turns:
    def __init__(self, *, cache: Cache, quotas: quota_gate.QuotaGate,
                 now: Callable[[], float], half_life: float = 3600.0,
                 observe_every: float = 1.0) -> None:
        self.cache = cache
        self.quotas = quotas
        self.now = now
        self.fair = FairShare(half_life=half_life)
        self.observe_every = observe_every
        self._observed_at: float | None = None
        # The pending containers of each class (insertion-ordered sets), the classes of
        # each shape, and the class each pending container is filed under.
        self.classes: dict[str, dict[Ref, None]] = {}
        self._shapes: dict[str, dict[str, None]] = {}
        self._class_of: dict[Ref, str] = {}
        # Each workspace's account while the User store does not change, and its recent
        # use while neither that nor the observed use changes.
        self._accounts: dict[str, str] = {}
        self._accounts_seen: tuple[int, int] | None = None
        self._usages: dict[str, float] = {}
        self._usages_seen: tuple[int, int, int] | None = None
        # The zone's capacity while the Node store does not change.
        self._capacity: tuple[tuple[int, int], InUse] | None = None

    def on_container(self, delta: Delta) -> None:
        ref = objects.ref_of(delta.object)
        value = self._class_of.pop(ref, None)
        if value is not None:
            members = self.classes.get(value)
            if members is not None:
                members.pop(ref, None)
                if not members:
                    del self.classes[value]
                    shape = value.rsplit("|", 2)[0]
                    of_shape = self._shapes.get(shape)
                    if of_shape is not None:
                        of_shape.pop(value, None)
                        if not of_shape:
                            del self._shapes[shape]
        for value in by_class(delta.new) if delta.new is not None else ():
            members = self.classes.get(value)
            if members is None:
                members = self.classes[value] = {}
                self._shapes.setdefault(value.rsplit("|", 2)[0], {})[value] = None
            members[ref] = None
            self._class_of[ref] = value

    async def run(self) -> None:
        """Observe use every ``observe_every`` seconds, so history builds up also while
        nothing is being placed."""
        while True:
            self.observe()
            await anyio.sleep(self.observe_every)

    def account_of(self, workspace: str) -> str:
        """Who pays for ``workspace``: the user named like it, or the one user whose
        default it is; else the workspace itself (kept until a User changes)."""
        users = self.cache.store(kinds.USER)
        seen = (id(users), users.changes)
        if seen != self._accounts_seen:
            self._accounts.clear()
            self._accounts_seen = seen
        account = self._accounts.get(workspace)
        if account is None:
            if users.get_named(workspace) is not None:
                account = workspace
            else:
                owners = users.by_index(DEFAULT_WORKSPACE_INDEX, workspace)
                account = owners[0].metadata.name if len(owners) == 1 else workspace
            self._accounts[workspace] = account
        return account

    def usage(self, workspace: str) -> float:
        users = self.cache.store(kinds.USER)
        seen = (id(users), users.changes, self.fair.version)
        if seen != self._usages_seen:
            self._usages.clear()
            self._usages_seen = seen
        usage = self._usages.get(workspace)
        if usage is None:
            usage = self._usages[workspace] = self.fair.usage(self.account_of(workspace))
        return usage

    def capacity(self) -> InUse:
        """The zone's GPUs and CPU millicores (kept until a Node changes)."""
        nodes = self.cache.store(kinds.NODE)
        seen = (id(nodes), nodes.changes)
        if self._capacity is None or self._capacity[0] != seen:
            self._capacity = (seen, InUse(
                gpus=sum(len(n.node.status.gpus) for n in nodes),
                millicores=sum(n.node.status.cpu.count * 1000 for n in nodes)))
        return self._capacity[1]

    def observe(self) -> None:
        now = self.now()
        if self._observed_at is not None and now - self._observed_at < self.observe_every:
            return
        self._observed_at = now
        gpus: dict[str, int] = defaultdict(int)
        millicores: dict[str, int] = defaultdict(int)
        accounts: dict[str, str] = {}
        for workspace, held_gpus, held_millicores in self.quotas.tally.per_workspace():
            if not held_gpus and not held_millicores:
                continue  # held once, nothing now: as if never seen
            account = accounts.get(workspace)
            if account is None:
                account = accounts[workspace] = self.account_of(workspace)
            gpus[account] += held_gpus
            millicores[account] += held_millicores
        in_use = {a: InUse(gpus[a], millicores[a]) for a in gpus.keys() | millicores.keys()}
        self.fair.observe(now, in_use=in_use, capacity=self.capacity())

    def ahead(self, *, key: Ref, container: object_pb2.Object, gpus: tuple[GPU, ...],
              millicores: int, assumed: Mapping[Ref, Placement]) -> Ahead | None:
        """Why ``container`` yields to another pending one now, or None: its turn."""
        if len(self.classes) <= 1:
            return None
        value = self._class_of.get(key)
        shape = value.rsplit("|", 2)[0] if value is not None else shape_of(container)
        of_shape = self._shapes.get(shape)
        if of_shape is None or len(of_shape) <= 1:
            return None
        classes = list(of_shape)
        store = self.cache.store(kinds.CONTAINER)
        self.observe()
        priority = container.container.spec.template.priority
        mine = (-priority, self.usage(container.metadata.workspace), created(container))
        best: tuple[tuple[int, float, float], str, Ref] | None = None
        for value in classes:
            _, their_priority, workspace = value.rsplit("|", 2)
            head = (-int(their_priority), self.usage(workspace))
            if head > mine[:2] or (best is not None and head > best[0][:2]):
                continue
            first = next((r for r in self.classes[value] if r != key), None)
            other = store.get(first) if first is not None else None
            if other is None or first is None:
                continue
            theirs = (*head, created(other))
            if theirs >= mine or (best is not None and theirs >= best[0]):
                continue
            if self.quotas.refusal(key=first, container=other, gpus=gpus,
                                   millicores=millicores, assumed=assumed) is not None:
                continue  # held back by its own quota: it cannot take this place
            best = (theirs, value, first)
        if best is None:
            return None
        (their_priority_neg, their_usage, _), value, first = best
        workspace = value.rsplit("|", 1)[1]
        # Words that do not change while it waits, so its status is written once.
        if -their_priority_neg != priority:
            why = f"priority {-their_priority_neg} over {priority}"
        elif their_usage != mine[1]:
            why = "less recent use (fair share)"
        else:
            why = "waiting longer"
        return Ahead(f"queued: workspace {workspace}'s containers of the same shape go "
                     f"first ({why})", first)
