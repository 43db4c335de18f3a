"""The work queue: dedup, one worker per key, dirty re-runs, backoff, delayed adds."""

from __future__ import annotations

import anyio
import pytest

from dora.runtime.clock import FakeClock
from dora.runtime.queue import ShutDown, WorkQueue


def queue(clock: FakeClock | None = None) -> WorkQueue[str]:
    return WorkQueue(clock=clock or FakeClock(), base_delay=1.0, max_delay=8.0)


async def test_a_burst_of_adds_is_one_item() -> None:
    q = queue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"
    assert len(q) == 0


async def test_a_key_in_flight_is_not_handed_out_again_but_runs_once_more_after() -> None:
    q = queue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0, "in flight: marked dirty, not queued"
    q.done("a")
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_backoff_doubles_to_the_cap_and_forget_resets_it() -> None:
    q = queue()
    assert [q.add_rate_limited("a") for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert q.failures("a") == 5
    q.forget("a")
    assert q.backoff("a") == 1.0


async def test_delayed_keys_arrive_when_the_clock_says_so() -> None:
    clock = FakeClock()
    q = queue(clock)
    got: list[str] = []
    async with anyio.create_task_group() as group:
        group.start_soon(q.run_delays)

        async def worker() -> None:
            while True:
                try:
                    key = await q.get()
                except ShutDown:
                    return
                got.append(key)
                q.done(key)

        group.start_soon(worker)
        q.add_after("late", 5)
        q.add_after("soon", 1)
        q.add_after("late", 10)  # a later deadline does not push back an earlier one
        await anyio.wait_all_tasks_blocked()
        assert got == []
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        assert got == ["soon"]
        clock.advance(3.9)
        await anyio.wait_all_tasks_blocked()
        assert got == ["soon"]
        clock.advance(0.1)
        await anyio.wait_all_tasks_blocked()
        assert got == ["soon", "late"]
        clock.advance(100)
        await anyio.wait_all_tasks_blocked()
        assert got == ["soon", "late"], "the superseded deadline fires nothing"
        q.shutdown()


async def test_an_earlier_deadline_replaces_a_later_one() -> None:
    clock = FakeClock()
    q = queue(clock)
    async with anyio.create_task_group() as group:
        group.start_soon(q.run_delays)
        q.add_after("a", 10)
        await anyio.wait_all_tasks_blocked()
        q.add_after("a", 2)
        await anyio.wait_all_tasks_blocked()
        clock.advance(2)
        await anyio.wait_all_tasks_blocked()
        assert len(q) == 1
        q.shutdown()


async def test_shutdown_releases_waiting_workers() -> None:
    q = queue()
    async with anyio.create_task_group() as group:
        async def worker() -> None:
            with pytest.raises(ShutDown):
                await q.get()

        group.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        q.shutdown()
    q.add("ignored")
    assert len(q) == 0
