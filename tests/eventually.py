"""The one way a test waits for something: poll a probe until it answers, or fail
saying what was awaited and what was last seen.

A test never sleeps to let something happen (too short is flaky, too long is slow);
it waits for the condition itself. A sleep is left only where a test measures that
time passes with nothing happening (it says so in a comment).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import anyio
import pytest

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None] | T | None], *, what: str = "",
                     within: float = 20.0, every: float = 0.05,
                     ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``probe`` (a coroutine function or a plain one) every ``every`` seconds
    until it returns something truthy, and return that; an exception of ``ignore``
    counts as a falsy answer. After ``within`` seconds the test fails naming
    ``what`` and the last answer."""
    last: object = None
    with anyio.move_on_after(within):
        while True:
            try:
                answer = probe()
                if inspect.isawaitable(answer):
                    answer = await answer
                last = answer
            except ignore as exc:
                last = exc
                answer = None
            if answer:
                return cast(T, answer)
            await anyio.sleep(every)
    pytest.fail(f"timed out after {within}s waiting for {what or probe}; last seen: {last!r}")
