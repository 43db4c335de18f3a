"""Preemption: which running containers a waiting one of higher priority may stop.

Only in a zone whose ``spec.preemption`` is on. A waiting container P for which no
node has room may take the place of running containers (*victims*) of **lower
priority** and of **another account** (never the same user's: a user orders their
own work with priority, not by stopping it). For each node, the candidates are
tried lowest priority first (then the newest, which has lost the least work),
freed one at a time until P fits there by the scheduler's own filters; the node
chosen is the one whose victims have the lowest top priority, then the fewest.
Pure functions: the scheduler deletes the victims (their workloads make them
again, waiting) and P is placed once they are gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dora.api import errors, kinds, objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers.events import Recorder
from dora.controllers.scheduler import filters
from dora.controllers.scheduler.filters import NodeInfo, Port, Request
from dora.controllers.scheduler.snapshot import holds_resources, node_ports
from dora.runtime.cache import Cache

PREEMPTED = "Preempted"


@dataclass(frozen=True)
class Running:
    """A container that holds resources on a node, as preemption weighs it."""

    ref: Ref
    priority: int
    account: str
    created: float
    gpus: frozenset[int] = frozenset()
    millicores: int = 0
    ports: frozenset[Port] = frozenset()


def without(node: NodeInfo, gone: Iterable[Running]) -> NodeInfo:
    """``node`` as it is once ``gone`` have stopped."""
    gone = list(gone)
    return NodeInfo(
        name=node.name, ready=node.ready, scheduling_disabled=node.scheduling_disabled,
        allow=node.allow, cpu_product=node.cpu_product, cpu_capacity=node.cpu_capacity,
        gpus=node.gpus,
        used_gpus=node.used_gpus - frozenset().union(*(v.gpus for v in gone)),
        used_cpu=node.used_cpu - sum(v.millicores for v in gone),
        workloads=node.workloads, labelable=node.labelable,
        used_ports=node.used_ports - frozenset().union(*(v.ports for v in gone)),
    )


def choose(nodes: Sequence[NodeInfo], running: Mapping[str, Sequence[Running]],
           request: Request, *, priority: int,
           account: str) -> tuple[str, tuple[Running, ...]] | None:
    """The node and the victims to stop there so that ``request`` fits; None when it
    fits somewhere already, or nowhere even so."""
    if any(isinstance(filters.fit(n, request), filters.Fit) for n in nodes):
        return None
    best: tuple[tuple[int, int, str], str, tuple[Running, ...]] | None = None
    for node in sorted(nodes, key=lambda n: n.name):
        candidates = sorted(
            (v for v in running.get(node.name, ()) if v.priority < priority
             and v.account != account),
            key=lambda v: (v.priority, -v.created, v.ref.name))
        chosen: list[Running] = []
        for victim in candidates:
            chosen.append(victim)
            if isinstance(filters.fit(without(node, chosen), request), filters.Fit):
                cost = (max(v.priority for v in chosen), len(chosen), node.name)
                if best is None or cost < best[0]:
                    best = (cost, node.name, tuple(chosen))
                break
    return None if best is None else (best[1], best[2])


class Preemptor:
    """The scheduler's arm for preemption: finds victims (``choose``), deletes them
    with a ``Preempted`` event, and waits for them to stop before it stops more."""

    def __init__(self, *, client: Client, cache: Cache, recorder: Recorder, zone: str,
                 account_of: Callable[[str], str]) -> None:
        self.client = client
        self.cache = cache
        self.recorder = recorder
        self.zone = zone
        self.account_of = account_of
        # The victims each waiting container stopped, until they are gone.
        self._waiting_for: dict[Ref, tuple[Ref, ...]] = {}
        self.preempted = 0

    def enabled(self) -> bool:
        zone = self.cache.store(kinds.ZONE).get_named(self.zone)
        return zone is not None and zone.zone.spec.preemption

    def _running(self, nodes: Sequence[NodeInfo]) -> dict[str, list[Running]]:
        store = self.cache.store(kinds.CONTAINER)
        found: dict[str, list[Running]] = {}
        for node in nodes:
            for held in store.by_index("node", node.name):
                if not holds_resources(held):
                    continue
                spec = held.container.spec
                found.setdefault(node.name, []).append(Running(
                    ref=objects.ref_of(held), priority=spec.template.priority,
                    account=self.account_of(held.metadata.workspace),
                    created=held.metadata.creation_timestamp.ToNanoseconds() / 1e9,
                    gpus=frozenset(g.index for g in spec.gpus),
                    millicores=spec.cpu_millicores,
                    ports=frozenset(node_ports(spec.template))))
        return found

    async def preempt(self, *, key: Ref, container: object_pb2.Object, request: Request,
                      nodes: Sequence[NodeInfo]) -> str | None:
        """Stop what must stop for ``container`` to fit; what it says, or None."""
        store = self.cache.store(kinds.CONTAINER)
        stopping = [r for r in self._waiting_for.get(key, ()) if store.get(r) is not None]
        if stopping:
            return f"waiting for {len(stopping)} preempted container(s) to stop"
        self._waiting_for.pop(key, None)
        priority = container.container.spec.template.priority
        found = choose(nodes, self._running(nodes), request, priority=priority,
                       account=self.account_of(container.metadata.workspace))
        if found is None:
            return None
        node, victims = found
        for victim in victims:
            obj = store.get(victim.ref)
            if obj is None:
                continue
            self.recorder.warning(obj, PREEMPTED, (
                f"stopped for {container.metadata.workspace}/{container.metadata.name} "
                f"(priority {priority} over {victim.priority}); its workload makes it again"))
            with contextlib.suppress(errors.NotFound):
                await self.client.delete("Container", victim.ref.name, zone=victim.ref.zone,
                                         workspace=victim.ref.workspace)
            self.preempted += 1
        self._waiting_for[key] = tuple(v.ref for v in victims)
        return f"preempting {len(victims)} container(s) of lower priority on node {node}"
