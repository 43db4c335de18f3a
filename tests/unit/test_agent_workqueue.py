"""The agent's keyed work queue: one reconcile per key at a time, bursts collapse,
changes during a reconcile are not lost, failures back off per key."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from dora.agent.workqueue import Retry, WorkQueue


@contextlib.asynccontextmanager
async def running(queue: WorkQueue[str]) -> AsyncIterator[None]:
    task = asyncio.create_task(queue.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)


async def test_a_burst_of_adds_is_one_reconcile() -> None:
    seen: list[str] = []

    async def reconcile(key: str) -> None:
        seen.append(key)

    queue: WorkQueue[str] = WorkQueue(reconcile)
    for _ in range(10):
        queue.add("a")
    queue.add("b")
    async with running(queue):
        await until(queue.idle)
    assert sorted(seen) == ["a", "b"]


async def test_a_key_added_while_it_runs_runs_once_more_never_concurrently() -> None:
    active, most, runs = 0, 0, 0
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        nonlocal active, most, runs
        active += 1
        most = max(most, active)
        runs += 1
        if runs == 1:
            await release.wait()
        active -= 1

    queue: WorkQueue[str] = WorkQueue(reconcile)
    queue.add("a")
    async with running(queue):
        await until(lambda: runs == 1)
        queue.add("a")
        queue.add("a")
        release.set()
        await until(lambda: runs == 2 and queue.idle())
        await asyncio.sleep(0.05)
    assert (runs, most) == (2, 1)


async def test_a_slow_key_does_not_hold_up_others() -> None:
    slow = asyncio.Event()
    done: list[str] = []

    async def reconcile(key: str) -> None:
        if key == "slow":
            await slow.wait()
        done.append(key)

    queue: WorkQueue[str] = WorkQueue(reconcile)
    queue.add("slow")
    queue.add("fast")
    async with running(queue):
        await until(lambda: done == ["fast"])
        slow.set()
        await until(queue.idle)
    assert done == ["fast", "slow"]


async def test_failures_are_retried_with_backoff_and_reset_by_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: str) -> None:
        attempts.append(loop.time())
        if len(attempts) < 4:
            raise RuntimeError("engine says no")

    queue: WorkQueue[str] = WorkQueue(reconcile, backoff_base=0.02, backoff_max=1.0)
    queue.add("a")
    async with running(queue):
        await until(lambda: len(attempts) == 4 and queue.idle())
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08
    assert queue.failures("a") == 0
    assert queue.errors == 3
    assert "reconcile of a failed (attempt 1)" in caplog.text



async def test_an_expected_wait_is_retried_and_logged_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def reconcile(key: str) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise Retry("volume v is Pending")

    queue: WorkQueue[str] = WorkQueue(reconcile, backoff_base=0.01, backoff_max=0.01)
    caplog.set_level(logging.INFO, logger="dora.agent.workqueue")
    async with running(queue):
        queue.add("a")
        await until(lambda: len(calls) >= 2)
    [record] = [r for r in caplog.records if "volume v is Pending" in r.getMessage()]
    assert record.levelno == logging.INFO and record.exc_info is None
