"""The controller loop: results, retries with backoff, terminal errors, one reconcile
per key at a time, reconcile ids in the logs."""

from __future__ import annotations

import logging

import anyio
import pytest

from dora.api import errors
from dora.api.objects import Ref
from dora.runtime import reconcile
from dora.runtime.clock import FakeClock
from dora.runtime.reconcile import DONE, Controller, Result, TerminalError

KEY = Ref("Workload", "z", "w", "a")
OTHER = Ref("Workload", "z", "w", "b")


class Scripted:
    """Answers each reconcile with the next scripted outcome (a Result or an error)."""

    name = "scripted"

    def __init__(self, *outcomes: Result | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Ref] = []
        self.running: set[Ref] = set()
        self.overlap = False
        self.gate: anyio.Event | None = None

    async def reconcile(self, *, key: Ref) -> Result:
        if key in self.running:
            self.overlap = True
        self.running.add(key)
        try:
            self.calls.append(key)
            reconcile.logger("test").info("reconciling %s", key.name)
            if self.gate is not None:
                await self.gate.wait()
            outcome = self.outcomes.pop(0) if self.outcomes else DONE
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        finally:
            self.running.discard(key)


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def test_errors_are_retried_with_growing_backoff_and_success_resets_it() -> None:
    clock = FakeClock()
    reconciler = Scripted(RuntimeError("boom"), errors.Unavailable("down"), DONE)
    controller = Controller(reconciler=reconciler, clock=clock, workers=2, base_delay=1.0)
    async with anyio.create_task_group() as group:
        group.start_soon(controller.run)
        controller.enqueue(KEY)
        await settle()
        assert len(reconciler.calls) == 1
        clock.advance(0.9)
        await settle()
        assert len(reconciler.calls) == 1
        clock.advance(0.1)
        await settle()
        assert len(reconciler.calls) == 2
        clock.advance(1.9)
        await settle()
        assert len(reconciler.calls) == 2, "the second retry waits twice as long"
        clock.advance(0.1)
        await settle()
        assert len(reconciler.calls) == 3
        assert controller.queue.failures(KEY) == 0, "success resets the backoff"
        group.cancel_scope.cancel()
    assert controller.counters == {"error": 2, "success": 1}


async def test_requeue_after_and_terminal_errors() -> None:
    clock = FakeClock()
    recorded: list[tuple[Ref, str]] = []

    async def on_terminal(key: Ref, exc: TerminalError) -> None:
        recorded.append((key, str(exc)))

    reconciler = Scripted(Result(requeue_after=10), TerminalError("name too long"))
    controller = Controller(reconciler=reconciler, clock=clock, on_terminal=on_terminal)
    async with anyio.create_task_group() as group:
        group.start_soon(controller.run)
        controller.enqueue(KEY)
        await settle()
        clock.advance(10)
        await settle()
        assert len(reconciler.calls) == 2
        clock.advance(1000)
        await settle()
        assert len(reconciler.calls) == 2, "a terminal error is not retried"
        group.cancel_scope.cancel()
    assert recorded == [(KEY, "name too long")]
    assert controller.counters == {"requeue": 1, "terminal": 1}


async def test_conflicts_are_counted_apart() -> None:
    controller = Controller(reconciler=Scripted(errors.Conflict("stale")), clock=FakeClock())
    await controller.process(KEY)
    assert controller.counters == {"conflict": 1}
    assert controller.queue.failures(KEY) == 1


async def test_one_reconcile_per_key_and_a_change_during_it_runs_once_more() -> None:
    reconciler = Scripted()
    reconciler.gate = anyio.Event()
    controller = Controller(reconciler=reconciler, clock=FakeClock(), workers=4)
    async with anyio.create_task_group() as group:
        group.start_soon(controller.run)
        controller.enqueue(KEY)
        controller.enqueue(OTHER)
        await settle()
        assert sorted(k.name for k in reconciler.running) == ["a", "b"]
        for _ in range(3):
            controller.enqueue(KEY)
        await settle()
        assert not reconciler.overlap
        reconciler.gate.set()
        await settle()
        group.cancel_scope.cancel()
    assert [k.name for k in reconciler.calls].count("a") == 2
    assert not reconciler.overlap


async def test_log_lines_carry_the_reconcile_id(caplog: pytest.LogCaptureFixture) -> None:
    controller = Controller(reconciler=Scripted(), clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="test"):
        await controller.process(KEY)
        await controller.process(KEY)
    ids = [r.getMessage().split("]")[0] for r in caplog.records if r.name == "test"]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(i.startswith("[scripted-") for i in ids)


async def test_an_expected_wait_is_retried_and_logged_as_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reconciler = Scripted(reconcile.Retry("volume v is Pending"), DONE)
    controller = Controller(reconciler=reconciler, clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="dora.runtime.reconcile"):
        await controller.process(KEY)
    [record] = [r for r in caplog.records if "volume v is Pending" in r.getMessage()]
    assert record.levelno == logging.INFO and record.exc_info is None
    assert controller.counters["wait"] == 1 and controller.queue.failures(KEY) == 1


async def test_a_failure_logs_its_traceback_once_then_one_line_per_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    controller = Controller(reconciler=Scripted(RuntimeError("boom"), RuntimeError("boom")),
                            clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="dora.runtime.reconcile"):
        await controller.process(KEY)
        await controller.process(KEY)
    records = [r for r in caplog.records if "boom" in r.getMessage()]
    assert [bool(r.exc_info) for r in records] == [True, False]
    assert "(attempt 2)" in records[1].getMessage()


async def test_the_queue_is_idle_only_with_nothing_ready_processing_or_dirty() -> None:
    reconciler = Scripted()
    reconciler.gate = anyio.Event()
    controller = Controller(reconciler=reconciler, clock=FakeClock())
    assert controller.queue.idle()
    async with anyio.create_task_group() as group:
        group.start_soon(controller.run)
        controller.enqueue(KEY)
        assert not controller.queue.idle()
        await settle()
        controller.enqueue(KEY)  # during its reconcile: dirty
        assert not controller.queue.idle()
        reconciler.gate.set()
        await settle()
        assert controller.queue.idle()
        controller.queue.add_after(KEY, 5)  # not due: not counted
        assert controller.queue.idle()
        group.cancel_scope.cancel()
