"""The clock seam: time enters the controllers through a ``Clock``.

Backoff, requeue-after, the node grace period and rollout timeouts all read
``clock.now()`` (monotonic seconds) and wait with ``clock.sleep()``; status
timestamps come from ``clock.wall()``. ``FakeClock`` moves only when a test
calls ``advance``, so those behaviours are tested without sleeping.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import time
from typing import Protocol

import anyio
import anyio.lowlevel


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wall(self) -> dt.datetime:
        """The current UTC time, for timestamps written to objects."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that stands still until ``advance`` moves it; sleepers wake when due."""

    def __init__(self, *, start: float = 1000.0,
                 wall_start: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> dt.datetime:
        return self._wall_start + dt.timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), event))
        await event.wait()

    def advance(self, seconds: float) -> None:
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, event in self._sleepers if not event.is_set())


async def wait_event(event: anyio.Event, *, seconds: float | None, clock: Clock) -> bool:
    """Wait for ``event`` at most ``seconds`` of ``clock`` (None: forever); whether it
    was set."""
    if event.is_set():
        return True
    if seconds is None:
        await event.wait()
        return True
    async with anyio.create_task_group() as group:

        async def alarm() -> None:
            await clock.sleep(seconds)
            group.cancel_scope.cancel()

        group.start_soon(alarm)
        await event.wait()
        group.cancel_scope.cancel()
    return event.is_set()
