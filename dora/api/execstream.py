"""One command run in a Container, from the client's side (``Client.exec``).

The call is a bidirectional gRPC stream: the first message starts the command,
later ones carry stdin, terminal resizes and close-stdin; the answers are
stdout/stderr bytes and, last, the exit code. ``output()`` yields the bytes and
records ``exit_code`` when the exit message comes. If the stream ends without
it (a dropped connection, an apiserver or agent gone), ``output()`` raises
``errors.Unavailable``: a broken session must never look like success.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

import grpc

from dora.api import errors
from dora.api.v1 import streams_pb2

Stream = Literal["stdout", "stderr"]


class ExecStream:
    """Use as ``async with client.exec(...) as session``; see the module docstring."""

    def __init__(self, *, stub: Any, start: streams_pb2.ExecStart,
                 metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._start = start
        self._metadata = metadata
        self._call: Any = None
        self.exit_code: int | None = None
        self._write_lock = asyncio.Lock()

    async def __aenter__(self) -> ExecStream:
        self._call = self._stub.Exec(metadata=self._metadata)
        await self._write(streams_pb2.ExecInput(start=self._start))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._call is not None:
            self._call.cancel()

    async def _write(self, message: streams_pb2.ExecInput) -> bool:
        """Send ``message``; False when the call is already over (the command exited)."""
        async with self._write_lock:
            try:
                await self._call.write(message)
                return True
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return False

    async def send(self, data: bytes) -> bool:
        return await self._write(streams_pb2.ExecInput(stdin=data))

    async def resize(self, *, rows: int, cols: int) -> bool:
        return await self._write(streams_pb2.ExecInput(
            resize=streams_pb2.TerminalSize(rows=rows, cols=cols)
        ))

    async def close_stdin(self) -> bool:
        return await self._write(streams_pb2.ExecInput(close_stdin=streams_pb2.CloseStdin()))

    async def output(self) -> AsyncIterator[tuple[Stream, bytes]]:
        """("stdout" or "stderr", bytes) until the command exits; then ``exit_code`` is set."""
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
                which = message.WhichOneof("output")
                if which == "stdout":
                    yield "stdout", message.stdout
                elif which == "stderr":
                    yield "stderr", message.stderr
                elif which == "exit":
                    self.exit_code = int(message.exit.code)
                    return
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from None
        raise errors.Unavailable("the exec stream ended without the command's exit code")

    async def wait(self) -> tuple[bytes, bytes, int]:
        """Everything the command printed (stdout, stderr) and its exit code."""
        out, err = bytearray(), bytearray()
        async for stream, data in self.output():
            (out if stream == "stdout" else err).extend(data)
        assert self.exit_code is not None
        return bytes(out), bytes(err), self.exit_code
