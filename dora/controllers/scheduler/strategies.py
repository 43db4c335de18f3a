"""Placement strategies (``config.affinity``): pick one of the nodes that fit.

Pure functions over the ``Fit``s that ``filters.fits`` found (sorted by node
name), so they are tested on their own, with hypothesis:

- ``First``: the first node, by name, that fits.
- ``Random``: any node that fits, from a seeded random source.
- ``Distribute`` (spread): the node with the fewest containers of this
  workload, then the least loaded, then by name.
- ``Fill`` (binpack): the most loaded node that still fits, then by name.

A node's load is the share of the resource the request is about that is in
use: GPUs for a GPU request, CPU millicores otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from dora.controllers.scheduler.filters import Fit, NodeInfo, Request


class RandomSource(Protocol):
    """What ``Random`` needs; ``random.Random(seed)`` is one."""

    def random(self) -> float: ...


def load(node: NodeInfo, request: Request) -> float:
    if request.gpu_count > 0:
        return len(node.used_gpus) / len(node.gpus) if node.gpus else 1.0
    return node.used_cpu / node.cpu_capacity if node.cpu_capacity else 1.0


def first(fits: Sequence[Fit], request: Request) -> Fit:
    return min(fits, key=lambda f: f.node.name)


def random(fits: Sequence[Fit], request: Request, *, rng: RandomSource) -> Fit:
    ordered = sorted(fits, key=lambda f: f.node.name)
    return ordered[min(len(ordered) - 1, int(rng.random() * len(ordered)))]


def distribute(fits: Sequence[Fit], request: Request) -> Fit:
    return min(fits, key=lambda f: (f.node.workloads.get(request.workload, 0),
                                    load(f.node, request), f.node.name))


def fill(fits: Sequence[Fit], request: Request) -> Fit:
    return min(fits, key=lambda f: (-load(f.node, request), f.node.name))


STRATEGIES = ("First", "Random", "Distribute", "Fill")


def choose(strategy: str, fits: Sequence[Fit], request: Request, *,
           rng: RandomSource) -> Fit | None:
    """The fit ``strategy`` picks; None when nothing fits. Unknown strategies act as First."""
    if not fits:
        return None
    pick: Callable[[Sequence[Fit], Request], Fit] = {
        "Distribute": distribute,
        "Fill": fill,
    }.get(strategy, first)
    if strategy == "Random":
        return random(fits, request, rng=rng)
    return pick(fits, request)
