"""Give freed memory back to the system after a burst.

A flood of large requests (refused or not) makes gRPC's C core allocate and free
megabytes of buffers on its threads. glibc keeps freed memory in its arenas
for reuse, fragmented, so resident memory stays near the flood's peak long
after it (measured: 44 MiB idle, 128 MiB after 800 refused 4 MB Applies, for
good). ``malloc_trim`` returns those free pages: ``Trimmer`` checks resident
memory every few seconds and trims, in a thread (it takes the arenas' locks,
never the event loop), when it grew by more than ``slack`` since the last
trim. Steady state costs one read of ``/proc/self/statm`` per period. Where
the C library has no ``malloc_trim`` (not glibc) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    """This process's resident memory in bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


def _malloc_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class Trimmer:
    def __init__(self, *, every: float = 5.0, slack: int = 16 * 1024 * 1024) -> None:
        self.every = every
        self.slack = slack
        self.trims = 0
        self._trim = _malloc_trim()

    async def run(self) -> None:
        if self._trim is None:
            log.debug("no malloc_trim in this C library; memory is not trimmed")
            return
        trimmed = resident()
        while True:
            await asyncio.sleep(self.every)
            now = resident()
            if now - trimmed > self.slack:
                await asyncio.to_thread(self._trim)
                self.trims += 1
                trimmed = resident()
                log.debug("trimmed freed memory: resident %d -> %d MiB", now >> 20,
                          trimmed >> 20)
            else:
                trimmed = min(trimmed, now)
