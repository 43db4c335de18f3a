"""Quota arithmetic: does one more container fit every cap that covers it? Pure functions.

A ``Cap`` is a Quota as the gate reads it: whom it covers (a set of workspaces,
or the whole zone), and at most how many GPUs (per product set), CPU millicores
and containers may be placed at once. ``Tally`` is what is placed now, per
workspace. ``refusal`` answers for one container: None when every cap covering
its workspace has room, else the first cap's reason in words users read
(``quota lab: 2 of 2 GPUs in use, this container needs 1``).

A GPU entry of a cap counts the GPUs of the products it names (``All``: any),
by the product each container *got*: a container is checked once its node and
GPUs are chosen, so the product is known.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

ALL = "All"


@dataclass(frozen=True)
class Cap:
    name: str
    # None: every workspace of the zone.
    workspaces: frozenset[str] | None = None
    # (products, count): products empty or containing All means any GPU.
    gpus: tuple[tuple[frozenset[str], int], ...] = ()
    millicores: int | None = None
    containers: int | None = None

    def covers(self, workspace: str) -> bool:
        return self.workspaces is None or workspace in self.workspaces


@dataclass(frozen=True)
class Use:
    """One container's share: its workspace, GPUs (all of one product) and CPU."""

    workspace: str
    gpus: int = 0
    gpu_product: str = ""
    millicores: int = 0


def any_product(products: frozenset[str]) -> bool:
    return not products or ALL in products


@dataclass
class _Held:
    gpus: collections.Counter[str] = field(default_factory=collections.Counter)
    millicores: int = 0
    containers: int = 0


class Tally:
    """What is placed now, per workspace (add and remove keep it current)."""

    def __init__(self, uses: Iterable[Use] = ()) -> None:
        self._by_workspace: dict[str, _Held] = {}
        for use in uses:
            self.add(use)

    def add(self, use: Use, sign: int = 1) -> None:
        held = self._by_workspace.setdefault(use.workspace, _Held())
        if use.gpus:
            held.gpus[use.gpu_product] += sign * use.gpus
        held.millicores += sign * use.millicores
        held.containers += sign

    def remove(self, use: Use) -> None:
        self.add(use, -1)

    def per_workspace(self) -> Iterable[tuple[str, int, int]]:
        """Each workspace's GPUs and CPU millicores held now."""
        return [(w, sum(h.gpus.values()), h.millicores) for w, h in self._by_workspace.items()]

    def _held(self, cap: Cap) -> Iterable[_Held]:
        if cap.workspaces is None:
            return self._by_workspace.values()
        return [self._by_workspace[w] for w in cap.workspaces if w in self._by_workspace]

    def gpus(self, cap: Cap, products: frozenset[str]) -> int:
        every = any_product(products)
        return sum(n for held in self._held(cap) for p, n in held.gpus.items()
                   if every or p in products)

    def millicores(self, cap: Cap) -> int:
        return sum(held.millicores for held in self._held(cap))

    def containers(self, cap: Cap) -> int:
        return sum(held.containers for held in self._held(cap))


def _products_text(products: frozenset[str]) -> str:
    return "" if any_product(products) else f" of [{', '.join(sorted(products))}]"


def refusal(caps: Iterable[Cap], tally: Tally, use: Use) -> str | None:
    """Why ``use`` may not be placed now (the first full cap), or None when it fits all."""
    for cap in sorted(caps, key=lambda c: c.name):
        if not cap.covers(use.workspace):
            continue
        if use.gpus:
            for products, count in cap.gpus:
                if not (any_product(products) or use.gpu_product in products):
                    continue
                held = tally.gpus(cap, products)
                if held + use.gpus > count:
                    return (f"quota {cap.name}: {held} of {count} GPUs{_products_text(products)}"
                            f" in use, this container needs {use.gpus}")
        if cap.millicores is not None and use.millicores:
            held = tally.millicores(cap)
            if held + use.millicores > cap.millicores:
                return (f"quota {cap.name}: {held}m of {cap.millicores}m CPU in use, "
                        f"this container needs {use.millicores}m")
        if cap.containers is not None:
            held = tally.containers(cap)
            if held + 1 > cap.containers:
                return f"quota {cap.name}: {held} of {cap.containers} containers placed"
    return None
