"""The gate's limiter: slots per key, a bounded queue that waits in order and for a
bounded time, refusals beyond, and no slot lost to a timeout or a cancellation;
and the request id JSON log lines carry."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from dora.api import errors
from dora.apiserver.gate import Limiter
from dora.observability import logs as logformat


async def test_slots_then_a_queue_in_order_then_refusals() -> None:
    limiter = Limiter(slots=2, queue=2, wait=5.0, what="by user")
    await limiter.acquire("a")
    await limiter.acquire("a")
    order: list[int] = []

    async def waiter(i: int) -> None:
        await limiter.acquire("a")
        order.append(i)

    waiters = [asyncio.create_task(waiter(i)) for i in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(errors.Exhausted, match="'a'"):
        await limiter.acquire("a")  # two hold, two wait: the fifth is refused
    await limiter.acquire("b")  # another key is not affected
    limiter.release("a")
    limiter.release("a")
    await asyncio.gather(*waiters)
    assert order == [0, 1]
    assert limiter.held("a") == 2
    for _ in range(2):
        limiter.release("a")
    assert limiter.held("a") == 0 and not limiter._waiting


@pytest.mark.parametrize("queue", [0, 1])
async def test_a_wait_is_bounded_and_gives_back_nothing_it_did_not_get(queue: int) -> None:
    limiter = Limiter(slots=1, queue=queue, wait=0.05, what="by user")
    await limiter.acquire("a")
    started = asyncio.get_running_loop().time()
    with pytest.raises(errors.Exhausted):
        await limiter.acquire("a")
    assert asyncio.get_running_loop().time() - started < (0.04 if queue == 0 else 1.0)
    limiter.release("a")
    assert limiter.held("a") == 0 and not limiter._waiting
    await limiter.acquire("a")  # the slot is free again


async def test_a_cancelled_waiter_passes_a_handed_over_slot_on() -> None:
    limiter = Limiter(slots=1, queue=5, wait=5.0, what="by user")
    await limiter.acquire("a")
    first = asyncio.create_task(limiter.acquire("a"))
    second = asyncio.create_task(limiter.acquire("a"))
    await asyncio.sleep(0.01)
    limiter.release("a")  # handed to first...
    first.cancel()  # ...which is cancelled before it runs: second gets it
    await asyncio.sleep(0.01)
    assert second.done() and not second.cancelled()
    assert limiter.held("a") == 1
    limiter.release("a")
    assert limiter.held("a") == 0 and not limiter._waiting


def test_json_log_lines_carry_the_request_id() -> None:
    formatter = logformat.JSONFormatter()
    record = logging.LogRecord("dora.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    assert "request" not in json.loads(formatter.format(record))
    token = logformat.request_id.set("abc123")
    try:
        line = json.loads(formatter.format(record))
    finally:
        logformat.request_id.reset(token)
    assert (line["message"], line["level"], line["request"]) == ("hello you", "INFO", "abc123")
