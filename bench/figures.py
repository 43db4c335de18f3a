"""A figure: what was measured, against what, and whether it meets its target."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str
    met: bool
    baseline: dict[str, Any] = field(default_factory=dict)
    ratio: float | None = None
    notes: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(samples: list[float], pct: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")
