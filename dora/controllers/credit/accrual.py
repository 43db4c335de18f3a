"""The arithmetic of credits: weeks, windows, prices and charges. Pure functions.

A container is charged for the time it ran: from ``status.startedAt`` to
``status.finishedAt`` (it ended), to ``metadata.deletionTimestamp`` (it was
asked to go: the few seconds Docker takes to stop it are not charged), or to
now (it still runs). That window is clipped to the week, so a container that
runs across the week's start is charged to each week for its part of it.

Its price per hour is the sum over what it holds: each GPU in ``spec.gpus`` at
the price of the zone's Resourcecredit whose ``product_name`` is the GPU's
(any case), and its CPU (``spec.cpuMillicores / 1000`` cores) at the price of
the Resourcecredit named like its node's CPU model. A product without a
Resourcecredit costs nothing.

Everything here depends only on its arguments (no clock, no cache), so a
controller that restarts computes exactly what it computed before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dora.api.v1 import object_pb2

HOUR = 3600.0
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TERMINAL_PHASES = frozenset({"Exited", "Failed", "Lost"})
PRICE_UNIT = "priceUnit"


def weekday(name: str) -> int:
    """0 for Monday ... 6 for Sunday, from a day's name or its first three letters."""
    word = name.strip().lower()
    for index, day in enumerate(WEEKDAYS):
        if word in (day, day[:3]):
            return index
    raise ValueError(f"--credit-week-start: {name!r} is not a day of the week "
                     f"(one of {', '.join(d.capitalize() for d in WEEKDAYS)})")


@dataclass(frozen=True)
class Week:
    start: dt.datetime
    end: dt.datetime

    def clip(self, start: dt.datetime, end: dt.datetime) -> float:
        """Seconds of [start, end] that fall in this week."""
        return max(0.0, (min(end, self.end) - max(start, self.start)).total_seconds())


def week_of(now: dt.datetime, *, start_day: int = 0) -> Week:
    """The week (00:00 UTC of ``start_day`` to the next one) that holds ``now``."""
    now = now.astimezone(dt.UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - dt.timedelta(days=(now.weekday() - start_day) % 7)
    return Week(start, start + dt.timedelta(days=7))


@dataclass(frozen=True)
class Price:
    per_hour: float
    unit: str = ""


class Prices:
    """A zone's Resourcecredits by product name, any case."""

    def __init__(self, items: Mapping[str, Price] | None = None) -> None:
        self._by_product = {k.strip().lower(): v for k, v in (items or {}).items()}

    @classmethod
    def of(cls, resourcecredits: Iterable[object_pb2.Object]) -> Prices:
        prices: dict[str, Price] = {}
        for obj in resourcecredits:
            if obj.metadata.HasField("deletion_timestamp"):
                continue
            spec = obj.resourcecredit.spec
            name = spec.product_name or obj.metadata.name
            prices[name] = Price(spec.credit.per.hour, spec.annotations.get(PRICE_UNIT, ""))
        return cls(prices)

    def per_hour(self, product: str) -> float:
        price = self._by_product.get(product.strip().lower())
        return price.per_hour if price is not None else 0.0

    @property
    def unit(self) -> str:
        """The price unit all prices share; "" when none is set or they differ."""
        units = {p.unit for p in self._by_product.values()}
        return units.pop() if len(units) == 1 else ""

    def __bool__(self) -> bool:
        return bool(self._by_product)


def per_hour(container: object_pb2.Object, *, prices: Prices, cpu_product: str = "") -> float:
    """What ``container`` costs per hour for the GPUs and CPU it holds."""
    spec = container.container.spec
    rate = sum(prices.per_hour(gpu.product_name) for gpu in spec.gpus)
    if cpu_product and spec.cpu_millicores:
        rate += prices.per_hour(cpu_product) * spec.cpu_millicores / 1000
    return rate


def _time(message: object, field: str) -> dt.datetime | None:
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return getattr(message, field).ToDatetime(tzinfo=dt.UTC)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Window:
    """When a container ran; ``end`` None while it still runs."""

    start: dt.datetime
    end: dt.datetime | None

    def seconds_in(self, week: Week, *, now: dt.datetime) -> float:
        return week.clip(self.start, self.end if self.end is not None else now)


def window(container: object_pb2.Object) -> Window | None:
    """When ``container`` ran, from its status; None if it never started."""
    status = container.container.status
    start = _time(status, "started_at")
    if start is None:
        return None
    # A paused container still holds its devices: it is charged as a running one.
    live = status.phase in ("Running", "Paused")
    ends = [t for t in (_time(status, "finished_at") if not live else None,
                        _time(container.metadata, "deletion_timestamp")) if t is not None]
    if ends:
        return Window(start, max(start, min(ends)))
    if status.phase in TERMINAL_PHASES:
        # Ended with no time said (its Docker container vanished): nothing to go by.
        return Window(start, start)
    return Window(start, None)


def credits(rate: float, seconds: float) -> float:
    return rate * seconds / HOUR
