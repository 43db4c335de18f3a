"""The work queue: keys to reconcile, controller-runtime's contract in anyio.

- **Deduplication**: a key is queued at most once; a burst of events about one
  object becomes one reconcile.
- **One worker per key**: a key being reconciled is not handed out again; adding
  it meanwhile marks it *dirty*, and ``done`` queues it once more, so the change
  that arrived during the run is not lost.
- **Backoff**: ``add_rate_limited`` delays a key by ``base * 2**failures`` (capped);
  ``forget`` resets its failures after a success.
- **Delayed adds**: ``add_after`` (``requeue_after``); the earliest deadline of a
  key wins. A pump task (``run_delays``) moves due keys to the queue; it waits on
  the ``Clock``, so tests drive it with a fake clock.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

import anyio

from dora.runtime.clock import Clock, wait_event

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue is shut down: workers return."""


class WorkQueue(Generic[K]):
    def __init__(self, *, clock: Clock, base_delay: float = 0.05,
                 max_delay: float = 30.0) -> None:
        self._clock = clock
        self._base = base_delay
        self._max = max_delay
        self._ready: collections.deque[K] = collections.deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._delayed: list[tuple[float, int, K]] = []
        self._deadlines: dict[K, float] = {}
        self._seq = itertools.count()
        self._ready_event = anyio.Event()
        self._delay_event = anyio.Event()
        self._shut = False

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def shut_down(self) -> bool:
        return self._shut

    def add(self, key: K) -> None:
        if self._shut or key in self._queued:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        self._queued.add(key)
        self._ready.append(key)
        self._wake_workers()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        if self._shut:
            return
        deadline = self._clock.now() + delay
        known = self._deadlines.get(key)
        if known is not None and known <= deadline:
            return
        self._deadlines[key] = deadline
        heapq.heappush(self._delayed, (deadline, next(self._seq), key))
        self._delay_event.set()

    def backoff(self, key: K) -> float:
        """The delay the next ``add_rate_limited`` of ``key`` will use."""
        return min(self._max, self._base * float(2 ** self._failures.get(key, 0)))

    def add_rate_limited(self, key: K) -> float:
        delay = self.backoff(key)
        self._failures[key] = self._failures.get(key, 0) + 1
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def idle(self) -> bool:
        """Nothing queued, being processed, or added during processing (delayed keys
        are not counted: they are not due)."""
        return not (self._ready or self._processing or self._dirty)

    async def get(self) -> K:
        """The next key; it is the caller's until ``done(key)``."""
        while not self._ready:
            if self._shut:
                raise ShutDown
            await self._ready_event.wait()
        key = self._ready.popleft()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shutdown(self) -> None:
        self._shut = True
        self._wake_workers()
        self._delay_event.set()

    async def run_delays(self) -> None:
        """Move delayed keys to the queue when they are due; runs until shutdown."""
        while not self._shut:
            self._promote_due()
            timeout = None
            if self._delayed:
                timeout = max(0.0, self._delayed[0][0] - self._clock.now())
            self._delay_event = anyio.Event()
            await wait_event(self._delay_event, seconds=timeout, clock=self._clock)

    def _promote_due(self) -> None:
        now = self._clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            deadline, _, key = heapq.heappop(self._delayed)
            if self._deadlines.get(key) == deadline:
                del self._deadlines[key]
                self.add(key)

    def _wake_workers(self) -> None:
        self._ready_event.set()
        self._ready_event = anyio.Event()
