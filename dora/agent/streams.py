"""The ``AgentStreams`` gRPC service: a container's logs and exec, for apiservers.

The apiserver has already authenticated and authorized the user and resolved
the Docker id from the stored Container; ``server.AgentServer`` has checked the
apiserver's secret. What is left here is to check the Docker container is this
node's (``docker_streams.DockerStreams.owned``) and relay bytes.

Exec ends with exactly one ``exit`` message carrying the command's exit code.
If anything goes wrong before it, the call fails with a status instead: the
apiserver and the client never mistake a dropped stream for success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from dora.agent.docker_streams import (
    STDERR,
    DockerStreams,
    ExecSession,
    StreamError,
    TerminalSize,
)
from dora.api import grpcservice
from dora.api.v1 import streams_pb2

log = logging.getLogger(__name__)

SERVICE = "dora.api.v1.AgentStreams"
Context = grpc.aio.ServicerContext[Any, Any]

_CODES = {
    "not-found": grpc.StatusCode.NOT_FOUND,
    "not-running": grpc.StatusCode.FAILED_PRECONDITION,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}


def _size(message: streams_pb2.TerminalSize) -> TerminalSize:
    return TerminalSize(rows=message.rows, cols=message.cols)


class AgentStreamsService:
    def __init__(self, *, docker: DockerStreams) -> None:
        self.docker = docker

    async def Logs(self, request: streams_pb2.AgentLogsRequest,
                   context: Context) -> AsyncIterator[streams_pb2.LogChunk]:
        try:
            tail = request.tail_lines if request.HasField("tail_lines") else None
            async for data in self.docker.logs(request.docker_id, follow=request.follow,
                                               tail=tail, timestamps=request.timestamps):
                yield streams_pb2.LogChunk(data=data)
        except StreamError as exc:
            await context.abort(_CODES.get(exc.kind, grpc.StatusCode.UNKNOWN), str(exc))

    async def Exec(self, requests: AsyncIterator[streams_pb2.AgentExecInput],
                   context: Context) -> AsyncIterator[streams_pb2.ExecOutput]:
        try:
            first = await anext(aiter(requests), None)
            if first is None or first.WhichOneof("input") != "start":
                raise StreamError("the first message must be start", kind="invalid")
            start = first.start
            if not start.command:
                raise StreamError("start.command: empty", kind="invalid")
            session = await self.docker.exec(
                start.docker_id, list(start.command), tty=start.tty, stdin=start.stdin,
                size=_size(start.size) if start.HasField("size") else None,
            )
        except StreamError as exc:
            await context.abort(_CODES.get(exc.kind, grpc.StatusCode.UNKNOWN), str(exc))
            return
        inputs = asyncio.create_task(_feed(requests=requests, session=session))
        try:
            async for stream, data in session.output():
                if stream == STDERR:
                    yield streams_pb2.ExecOutput(stderr=data)
                else:
                    yield streams_pb2.ExecOutput(stdout=data)
            code = await session.exit_code()
            log.info("exec %s exited %d", session.exec_id[:12], code)
            yield streams_pb2.ExecOutput(exit=streams_pb2.ExecExit(code=code))
        except StreamError as exc:
            await context.abort(_CODES.get(exc.kind, grpc.StatusCode.UNKNOWN), str(exc))
        finally:
            inputs.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await inputs
            session.close()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(streams_pb2.DESCRIPTOR.services_by_name["AgentStreams"], self)


async def _feed(*, requests: AsyncIterator[streams_pb2.AgentExecInput],
                session: ExecSession) -> None:
    """Stdin, resizes and close-stdin from the apiserver, until its side ends."""
    async for message in requests:
        which = message.WhichOneof("input")
        if which == "stdin":
            await session.write(message.stdin)
        elif which == "resize":
            await session.resize(_size(message.resize))
        elif which == "close_stdin":
            await session.close_stdin()
    await session.close_stdin()
