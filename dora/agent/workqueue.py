"""A small keyed work queue: controller-runtime's contract, for the agent alone.

The agent reconciles one Container key at a time and many keys at once. A key is
only ever a name to look at, never an event: a burst of changes to one key
becomes one reconcile; a key added while its reconcile runs runs once more
after it (the change may have come too late to be seen); a failed reconcile is
retried with per-key exponential backoff, reset by a success. A slow key (an
image pull) never holds up the others.

(The controllers have their own runtime; the agent must not import it, and
needs only this much.)
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)


class Retry(Exception):
    """An expected wait (a Volume not Ready yet): retried with backoff like any
    error, but logged as a line, never with a traceback."""


K = TypeVar("K", bound=Hashable)

_current_id: contextvars.ContextVar[int] = contextvars.ContextVar("reconcile_id", default=0)


def reconcile_id() -> str:
    """``r<n>``, the id of the reconcile running in this task, for its log lines."""
    return f"r{_current_id.get()}"


class WorkQueue(Generic[K]):
    def __init__(
        self,
        reconcile: Callable[[K], Awaitable[None]],
        *,
        workers: int = 16,
        backoff_base: float = 0.2,
        backoff_max: float = 30.0,
    ) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._pending: dict[K, None] = {}  # an ordered set
        self._running: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._wake = asyncio.Event()
        self._ids = itertools.count(1)
        self.reconciles = 0
        self.errors = 0

    def add(self, key: K) -> None:
        if key in self._running:
            self._dirty.add(key)
            return
        self._pending[key] = None
        self._wake.set()

    def add_after(self, key: K, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.add(key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def idle(self) -> bool:
        return not (self._pending or self._running or self._dirty)

    async def run(self) -> None:
        """Run reconciles until cancelled."""
        slots = asyncio.Semaphore(self._workers)
        try:
            async with asyncio.TaskGroup() as group:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    for key in list(self._pending):
                        if key in self._running:
                            continue
                        del self._pending[key]
                        self._running.add(key)
                        group.create_task(self._work(key, slots))
        finally:
            for handle in self._timers:
                handle.cancel()
            self._timers.clear()

    async def _work(self, key: K, slots: asyncio.Semaphore) -> None:
        rid = next(self._ids)
        _current_id.set(rid)
        try:
            async with slots:
                self.reconciles += 1
                await self._reconcile(key)
        except Exception as exc:
            self.errors += 1
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(self._backoff_base * 2 ** (failures - 1), self._backoff_max)
            if isinstance(exc, Retry):
                log.info("[r%d] %s waits (attempt %d), again in %.1fs: %s",
                         rid, key, failures, delay, exc)
            else:
                log.warning("[r%d] reconcile of %s failed (attempt %d), retrying in %.1fs: %s",
                            rid, key, failures, delay, exc, exc_info=failures == 1)
            self.add_after(key, delay)
        else:
            self._failures.pop(key, None)
        finally:
            self._running.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
