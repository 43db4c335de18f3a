"""A user's week, recomputed from scratch: the ledger of what is gone plus what is here.

``used`` this week is never a running total that a reconcile adds to (a
controller that dies between adding and writing would lose or double-count
time). Each reconcile computes it again from three things:

- ``settled``: what containers that are gone for good cost this week;
- ``charges``: the ledger, one entry per container uid that is being deleted,
  with its window and price (written to the Usercredit status *before* the
  credit controller lets the container go, see ``reconciler``);
- every live container of the user: its window clipped to the week, at its
  price per hour.

A container in the ledger is counted from the ledger only (by uid), so a
container seen again after its entry was written (a stale cache, a restart in
between) is never counted twice. An entry whose container is no longer in the
cache has gone for good (uids are never reused), so it is folded into
``settled``: the ledger holds only the few containers being deleted right now.
When the week rolls over, ``settled`` starts at zero and ledger entries are
clipped to the new week (a container that ran across midnight is charged its
new-week part).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from dora.api.v1 import credits_pb2, object_pb2
from dora.controllers.credit import accrual
from dora.controllers.credit.accrual import Week

Charge = credits_pb2.CreditCharge


@dataclass(frozen=True)
class Metered:
    """A live container of the user and what it costs per hour."""

    container: object_pb2.Object
    per_hour: float


@dataclass
class Account:
    used: float = 0.0
    running_per_hour: float = 0.0
    settled: float = 0.0
    charges: list[Charge] = field(default_factory=list)


def _time(ts: object) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.UTC)  # type: ignore[attr-defined, no-any-return]


def _reclip(entry: Charge, week: Week) -> Charge | None:
    """``entry`` charged for its part of ``week``; None if it ended before the week."""
    end = _time(entry.finished_at)
    if end < week.start:
        return None
    clipped = Charge()
    clipped.CopyFrom(entry)
    seconds = week.clip(_time(entry.started_at), end)
    clipped.credits = accrual.credits(entry.per_hour, seconds)
    return clipped


def charge_of(metered: Metered, window: accrual.Window, *, week: Week,
              now: dt.datetime) -> Charge:
    container = metered.container
    end = window.end if window.end is not None else now
    entry = Charge(uid=container.metadata.uid,
                   container=f"{container.metadata.workspace}/{container.metadata.name}",
                   workload=container.container.spec.workload, per_hour=metered.per_hour)
    entry.started_at.FromDatetime(window.start)
    entry.finished_at.FromDatetime(end)
    entry.credits = accrual.credits(metered.per_hour, week.clip(window.start, end))
    return entry


def account(*, previous: credits_pb2.UsercreditStatus | None, week: Week, now: dt.datetime,
            live: Sequence[Metered]) -> Account:
    """This week's account of a user from the last written status and the live containers.

    ``previous`` is the status as last written (None when there is no Usercredit);
    ``live`` every container of the user in the cache, deleted or not.
    """
    same_week = (previous is not None and previous.HasField("week_start")
                 and _time(previous.week_start) == week.start)
    result = Account(settled=previous.settled if previous is not None and same_week else 0.0)
    ledger: dict[str, Charge] = {}
    for entry in previous.charges if previous is not None else ():
        clipped = _reclip(entry, week)
        if clipped is not None:
            ledger[entry.uid] = clipped
    here = {m.container.metadata.uid for m in live}
    for uid in [u for u in ledger if u not in here]:
        result.settled += ledger.pop(uid).credits
    running = 0.0
    for metered in live:
        container = metered.container
        uid = container.metadata.uid
        if uid in ledger:
            continue
        window = accrual.window(container)
        if window is None:
            continue
        if container.metadata.HasField("deletion_timestamp"):
            ledger[uid] = charge_of(metered, window, week=week, now=now)
            continue
        running += accrual.credits(metered.per_hour, window.seconds_in(week, now=now))
        if window.end is None:
            result.running_per_hour += metered.per_hour
    result.charges = sorted(ledger.values(), key=lambda c: c.container)
    result.used = result.settled + sum(c.credits for c in result.charges) + running
    return result
