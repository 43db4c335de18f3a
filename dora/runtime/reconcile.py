"""Reconcilers and the controller loop that runs them.

A ``Reconciler`` gets a key (a ``Ref``), reads the cache, takes one step toward
the desired state, and returns a ``Result`` (``requeue_after`` to look again
later) or raises. A raised error is retried with per-key exponential backoff;
``TerminalError`` is logged and recorded, never retried (controller-runtime).
``errors.Conflict`` is expected (the cache was a step behind): it is retried
like any error, but counted apart and logged quietly. So is ``Retry``, an expected
wait (a Volume not Ready yet): one line at INFO, never a traceback. Any other
error's traceback is logged on a key's first failure, then one line per retry.

A ``Controller`` owns a work queue and runs ``workers`` reconciles at a time,
never two for the same key. Every reconcile gets an id that prefixes its log
lines (``ReconcileLog``), and counters say how many ended in success, requeue,
error, conflict or terminal error.
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from dora.api import errors
from dora.api.objects import Ref
from dora.observability import metrics
from dora.runtime.clock import Clock
from dora.runtime.queue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

_reconcile_id: contextvars.ContextVar[str] = contextvars.ContextVar("reconcile_id", default="-")
_ids = itertools.count(1)


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next: nothing, or another look after a delay."""

    requeue_after: float = 0.0


DONE = Result()


class TerminalError(Exception):
    """A reconcile cannot succeed by retrying (an invalid object, a name too long)."""


class Retry(Exception):
    """An expected wait (what the object needs is not there yet): retried with
    backoff like any error, but logged as one line at INFO."""


class Reconciler(Protocol):
    name: str

    async def reconcile(self, *, key: Ref) -> Result: ...


# Called with the key and the error when a reconcile fails for good.
OnTerminal = Callable[[Ref, TerminalError], Awaitable[None]]


class ReconcileLog(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines start with the id of the reconcile that wrote them."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{_reconcile_id.get()}] {msg}", kwargs


def logger(name: str) -> ReconcileLog:
    return ReconcileLog(logging.getLogger(name), {})


def current_id() -> str:
    return _reconcile_id.get()


class Controller:
    def __init__(
        self,
        *,
        reconciler: Reconciler,
        clock: Clock,
        workers: int = 4,
        on_terminal: OnTerminal | None = None,
        base_delay: float = 0.05,
        max_delay: float = 30.0,
    ) -> None:
        self.name = reconciler.name
        self.reconciler = reconciler
        self.clock = clock
        self.workers = workers
        self.on_terminal = on_terminal
        self._delays = (base_delay, max_delay)
        self.queue: WorkQueue[Ref] = self._new_queue()
        self.counters: collections.Counter[str] = collections.Counter()

    def _new_queue(self) -> WorkQueue[Ref]:
        base, cap = self._delays
        return WorkQueue(clock=self.clock, base_delay=base, max_delay=cap)

    def reset(self) -> None:
        """Drop the queue for a fresh, empty one (a new term of leadership)."""
        self.queue.shutdown()
        self.queue = self._new_queue()

    def enqueue(self, key: Ref) -> None:
        self.queue.add(key)
        metrics.QUEUE_ADDS.labels(self.name).inc()
        metrics.QUEUE_DEPTH.labels(self.name).set(len(self.queue))

    async def run(self) -> None:
        """Run the workers until the queue shuts down or the task is cancelled."""
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self.queue.run_delays)
                for _ in range(self.workers):
                    group.start_soon(self._worker)
        finally:
            self.queue.shutdown()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.process(key)
            finally:
                self.queue.done(key)

    def _count(self, outcome: str) -> None:
        self.counters[outcome] += 1
        metrics.RECONCILES.labels(self.name, outcome).inc()

    async def process(self, key: Ref) -> None:
        """One reconcile of ``key``, with its outcome fed back to the queue."""
        rid = f"{self.name}-{next(_ids)}"
        token = _reconcile_id.set(rid)
        started = time.monotonic()
        try:
            result = await self.reconciler.reconcile(key=key)
        except TerminalError as exc:
            self._count("terminal")
            self.queue.forget(key)
            log.error("[%s] %s: %s (not retried)", rid, key, exc)
            if self.on_terminal is not None:
                await self.on_terminal(key, exc)
        except errors.Conflict as exc:
            self._count("conflict")
            delay = self.queue.add_rate_limited(key)
            metrics.QUEUE_RETRIES.labels(self.name).inc()
            log.debug("[%s] %s: %s; again in %.2fs", rid, key, exc, delay)
        except Retry as exc:
            self._count("wait")
            delay = self.queue.add_rate_limited(key)
            metrics.QUEUE_RETRIES.labels(self.name).inc()
            log.info("[%s] %s waits (attempt %d): %s; again in %.2fs", rid, key,
                     self.queue.failures(key), exc, delay)
        except Exception as exc:
            self._count("error")
            delay = self.queue.add_rate_limited(key)
            metrics.QUEUE_RETRIES.labels(self.name).inc()
            if isinstance(exc, errors.DoraError):
                log.warning("[%s] %s: %s; again in %.2fs", rid, key, exc, delay)
            else:
                log.error("[%s] %s failed (attempt %d): %s; again in %.2fs", rid, key,
                          self.queue.failures(key), exc, delay,
                          exc_info=self.queue.failures(key) == 1)
        else:
            self.queue.forget(key)
            if result.requeue_after > 0:
                self._count("requeue")
                self.queue.add_after(key, result.requeue_after)
            else:
                self._count("success")
            log.debug("[%s] %s reconciled in %.1f ms", rid, key,
                      (time.monotonic() - started) * 1000)
        finally:
            _reconcile_id.reset(token)
            metrics.RECONCILE_SECONDS.labels(self.name).observe(time.monotonic() - started)
            metrics.QUEUE_DEPTH.labels(self.name).set(len(self.queue))
