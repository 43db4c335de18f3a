"""Which pending container goes first: priority, then fair share. Pure but for the clock.

The rank of a pending container is ``(-priority, share of its account, created)``,
smaller first. An *account* is whoever pays for the container's workspace (the
user the workspace is named after, or whose default workspace it is), else the
workspace itself (a shared one is its own account).

**Fair share** is Slurm's idea with Kubernetes' DRF: each account's recent use is
the integral over time of its *dominant share* (the larger of its GPUs in use over
the zone's GPUs, and its CPU millicores over the zone's), decaying with a
half-life, so an hour of the whole cluster a half-life ago weighs half an hour of
it now. ``FairShare.observe`` folds in what is in use since the last call; the
account with the least decayed use goes first. Every account has the same share
(weight 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class InUse:
    gpus: int = 0
    millicores: int = 0


def dominant_share(use: InUse, capacity: InUse) -> float:
    """DRF: the larger fraction of the zone the account holds, of GPUs or of CPU."""
    gpu = use.gpus / capacity.gpus if capacity.gpus else 0.0
    cpu = use.millicores / capacity.millicores if capacity.millicores else 0.0
    return max(gpu, cpu)


class FairShare:
    """Each account's decayed dominant-share-seconds (its recent use)."""

    def __init__(self, *, half_life: float) -> None:
        if half_life <= 0:
            raise ValueError("the fair-share half-life must be more than 0 seconds")
        self.half_life = half_life
        self._usage: dict[str, float] = {}
        self._last: float | None = None
        self._rate: dict[str, float] = {}
        # Counts the changes to ``usage``'s answers (who reads them may keep them until then).
        self.version = 0

    def observe(self, now: float, *, in_use: Mapping[str, InUse], capacity: InUse) -> None:
        """Fold in the time since the last call, at the rates last observed (what ran
        then ran until now); then take ``in_use`` as the rates from now on."""
        if self._last is not None and now > self._last:
            elapsed = now - self._last
            decay = 0.5 ** (elapsed / self.half_life)
            # The integral of rate * 0.5**((now - t) / h) over the elapsed time.
            weight = self.half_life / math.log(2) * (1 - decay)
            for account in set(self._usage) | set(self._rate):
                self._usage[account] = (self._usage.get(account, 0.0) * decay
                                        + self._rate.get(account, 0.0) * weight)
        self.version += 1
        self._last = now if self._last is None else max(self._last, now)
        self._rate = {a: dominant_share(u, capacity) for a, u in in_use.items()}

    def usage(self, account: str) -> float:
        return self._usage.get(account, 0.0)

    def seed(self, account: str, usage: float) -> None:
        self._usage[account] = usage
        self.version += 1


def rank(*, priority: int, usage: float, created: float,
         name: str) -> tuple[int, float, float, str]:
    """Smaller goes first: higher priority, then less recent use, then older."""
    return (-priority, usage, created, name)
