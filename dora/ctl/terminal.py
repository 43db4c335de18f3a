"""The local terminal for ``doractl exec -it`` and ``shell``: raw mode, size, stdin.

In raw mode every key (Ctrl-C, arrows, tab) goes to the remote shell as it is
typed, and the remote terminal does the echoing and line editing; the local
settings are restored however the session ends. Stdin is read by a daemon
thread rather than the event loop's reader, because a regular file or
``/dev/null`` cannot be polled and a blocked read must not keep the process
alive once the remote command has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import termios
import threading
import tty
from collections.abc import Callable, Coroutine, Iterator
from typing import Any


def is_terminal(fd: int) -> bool:
    return os.isatty(fd)


def size(fd: int = 1) -> tuple[int, int]:
    """(rows, cols) of the terminal on ``fd``; the environment's or 24x80 if none."""
    try:
        cols, rows = os.get_terminal_size(fd)
    except OSError:
        cols, rows = shutil.get_terminal_size((80, 24))
    return rows, cols


@contextlib.contextmanager
def raw(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode for the block; restored afterwards."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def read_stdin(*, loop: asyncio.AbstractEventLoop, fd: int,
               send: Callable[[bytes], Coroutine[Any, Any, object]],
               close: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """Forward what ``fd`` gives to ``send``, in order, and call ``close`` at its end."""

    def run() -> None:
        try:
            while True:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                step = send(data) if data else close()
                asyncio.run_coroutine_threadsafe(step, loop).result()
                if not data:
                    return
        except Exception:  # the loop is gone: the session is over
            return

    threading.Thread(target=run, name="stdin", daemon=True).start()


def write(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd`` (a terminal in raw mode, or a pipe)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]

