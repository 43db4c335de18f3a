"""``filters.fits`` then ``strategies.choose``, incrementally: the same answers, in
time that grows with the nodes that changed, not with the nodes.

Placing a container used to look at every node (is it Ready, which GPUs would it
give) and then at every node that fits (its load), for every container: 5 ms a
placement on a thousand nodes. But between two placements one or two nodes change
(the one just bound, the assumption dropped), so a ``Placer`` keeps, for each
request *shape* (the request without its workload: what ``filters.fit`` reads),
the nodes that fit it and, for the strategies used with it, those nodes in sorted
lists (each made on its first use, then kept):

- by name (``First``: the first; ``Random``: the one at a random index);
- by (load, name) (``Distribute``: the first node that runs none of the workload's
  containers; only when every fitting node runs some is there a scan, of those);
- by (-load, name) (``Fill``: the first).

It catches up with ``Snapshot.log`` (the names whose NodeInfo changed) before each
choice. When nothing fits, the Unschedulable message comes from ``filters.fits``
itself (that path is rare and need not be fast). The pure modules stay the
definition; ``tests/unit/controllers/test_scheduler_placer.py`` checks the two agree.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from dora.api.objects import Ref
from dora.controllers.scheduler import filters, strategies
from dora.controllers.scheduler.filters import Fit, NodeInfo, Request
from dora.controllers.scheduler.snapshot import Placement, Snapshot


def _remove(items: list[tuple[float, str]], item: tuple[float, str]) -> None:
    index = bisect.bisect_left(items, item)
    if index < len(items) and items[index] == item:
        del items[index]


# The orders a shape's fitting nodes are kept in, made on first use by a strategy
# (a workload shape is mostly placed with one strategy): entries and their sort keys.
NAME, LOAD, FILL = "name", "load", "fill"


@dataclass
class _Shape:
    """The nodes that fit one request shape, kept sorted the strategies' ways."""

    request: Request
    epoch: int = -1
    position: int = 0
    fits: dict[str, Fit] = field(default_factory=dict)
    loads: dict[str, float] = field(default_factory=dict)
    orders: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def reset(self) -> None:
        self.fits.clear()
        self.loads.clear()
        self.orders.clear()

    @staticmethod
    def _entry(order: str, load: float, name: str) -> tuple[float, str]:
        return (0.0, name) if order == NAME else (load, name) if order == LOAD else (-load, name)

    def order(self, order: str) -> list[tuple[float, str]]:
        entries = self.orders.get(order)
        if entries is None:
            entries = self.orders[order] = sorted(
                self._entry(order, load, name) for name, load in self.loads.items())
        return entries

    def update(self, name: str, info: NodeInfo | None) -> None:
        if name in self.fits:
            del self.fits[name]
            load = self.loads.pop(name)
            for order, entries in self.orders.items():
                _remove(entries, self._entry(order, load, name))
        if info is None:
            return
        result = filters.fit(info, self.request)
        if isinstance(result, Fit):
            load = strategies.load(info, self.request)
            self.fits[name] = result
            self.loads[name] = load
            for order, entries in self.orders.items():
                bisect.insort(entries, self._entry(order, load, name))


class Placer:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._shapes: dict[Request, _Shape] = {}

    def choose(self, request: Request, strategy: str, *, assumed: Mapping[Ref, Placement],
               rng: strategies.RandomSource) -> Fit | str:
        """What ``strategies.choose(strategy, filters.fits(nodes, request))`` picks, or
        the Unschedulable message when no node fits."""
        nodes = self.snapshot.current(assumed=assumed)
        shape = self._shape(request, nodes)
        if not shape.fits:
            _, reasons = filters.fits(nodes.values(), request)
            return filters.unschedulable_message(request, reasons)
        if strategy == "Random":
            names = shape.order(NAME)
            index = min(len(names) - 1, int(rng.random() * len(names)))
            return shape.fits[names[index][1]]
        if strategy == "Fill":
            return shape.fits[shape.order(FILL)[0][1]]
        if strategy == "Distribute":
            return self._distribute(shape, request.workload)
        return shape.fits[shape.order(NAME)[0][1]]

    def _shape(self, request: Request, nodes: Mapping[str, NodeInfo]) -> _Shape:
        key = replace(request, workload="")
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = _Shape(request=key)
        log = self.snapshot.log
        if shape.epoch != self.snapshot.epoch:
            shape.reset()
            for name, info in nodes.items():
                shape.update(name, info)
        else:
            for name in dict.fromkeys(log[shape.position:]):
                shape.update(name, nodes.get(name))
        shape.epoch, shape.position = self.snapshot.epoch, len(log)
        return shape

    @staticmethod
    def _distribute(shape: _Shape, workload: str) -> Fit:
        for _, name in shape.order(LOAD):
            fit = shape.fits[name]
            if not fit.node.workloads.get(workload, 0):
                return fit
        # Every node that fits runs some of the workload: the fewest, then as usual.
        return min(shape.fits.values(), key=lambda f: (
            f.node.workloads.get(workload, 0), shape.loads[f.node.name], f.node.name))
