"""The ``Streams`` gRPC service: a Container's logs and exec, relayed to its node's agent.

The original product's shell proxy trusted the node and container id the
client sent; here the client names only the Container (zone, workspace,
name). The caller is authorized on that Container (``Log`` for logs, ``Shell``
for exec, in its zone and workspace after defaults), then everything else is
read from etcd: the Container's ``spec.nodeName`` and ``status.dockerId``, and
that Node's ``spec.endpoint`` (``agentlink``). Nothing is kept between calls,
so any apiserver replica serves any container.

Exec relays both ways and ends with the agent's ``exit`` message. An agent
stream that ends without one fails the call (``UNAVAILABLE``): a dropped
stream is never passed on as success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from dora.api import errors, grpcservice
from dora.api.objects import Ref
from dora.api.v1 import streams_pb2, streams_pb2_grpc
from dora.apiserver.agentlink import AgentLink, FailedPrecondition, relaying
from dora.apiserver.auth.authorizer import Authorizer
from dora.apiserver.registry import Registry
from dora.apiserver.rpc import Context, caller

log = logging.getLogger(__name__)

SERVICE = "dora.api.v1.Streams"


@dataclass(frozen=True)
class Target:
    """Where a Container runs, as the stored objects say."""

    ref: Ref
    node: str
    docker_id: str
    phase: str


class StreamsService:
    def __init__(self, *, registry: Registry, link: AgentLink, authorizer: Authorizer) -> None:
        self.registry = registry
        self.link = link
        self.authz = authorizer

    async def _target(self, context: Context, *, verb: str, zone: str, workspace: str,
                      name: str) -> Target:
        """Authenticate, authorize ``verb`` on the Container, and resolve where it runs."""
        principal = caller()
        if not name:
            raise errors.Invalid("the container's name is required", field="name")
        scope = self.registry.scope_for(zone=principal.zone, workspace=principal.workspace)
        ref = self.registry.resolve(Ref("Container", zone, workspace, name), scope=scope)
        await self.authz.require(principal, verb, "Container", ref.zone, ref.workspace)
        obj = await self.registry.get(ref)
        spec, status = obj.container.spec, obj.container.status
        phase = status.phase or "Pending"
        label = f"container {ref.workspace}/{ref.name}"
        if not spec.node_name:
            raise FailedPrecondition(f"{label} is {phase}: not running on a node yet")
        if not status.docker_id:
            why = f" ({status.reason}: {status.message})" if status.reason else ""
            raise FailedPrecondition(f"{label} is {phase} on node {spec.node_name!r} and has "
                                     f"no Docker container yet{why}")
        if status.node_name and status.node_name != spec.node_name:
            raise FailedPrecondition(f"{label} is moving from node {status.node_name!r} to "
                                     f"{spec.node_name!r}; try again in a moment")
        return Target(ref=ref, node=spec.node_name, docker_id=status.docker_id, phase=phase)

    async def _stub(self, target: Target) -> streams_pb2_grpc.AgentStreamsStub:
        channel = await self.link.channel_for_node(zone=target.ref.zone, node=target.node)
        return streams_pb2_grpc.AgentStreamsStub(channel)

    async def Logs(self, request: streams_pb2.LogsRequest,
                   context: Context) -> AsyncIterator[streams_pb2.LogChunk]:
        call: Any = None
        async with relaying(context) as relay:
            try:
                target = await self._target(context, verb="Log", zone=request.zone,
                                            workspace=request.workspace, name=request.name)
                relay.node = target.node
                agent_request = streams_pb2.AgentLogsRequest(
                    docker_id=target.docker_id, follow=request.follow,
                    timestamps=request.timestamps,
                )
                if request.HasField("tail_lines"):
                    agent_request.tail_lines = request.tail_lines
                call = (await self._stub(target)).Logs(agent_request,
                                                       metadata=self.link.metadata())
                async for chunk in call:
                    yield chunk
            finally:
                if call is not None:
                    call.cancel()

    async def Exec(self, requests: AsyncIterator[streams_pb2.ExecInput],
                   context: Context) -> AsyncIterator[streams_pb2.ExecOutput]:
        call: Any = None
        inputs: asyncio.Task[None] | None = None
        async with relaying(context) as relay:
            try:
                first = await anext(aiter(requests), None)
                if first is None or first.WhichOneof("input") != "start":
                    raise errors.Invalid("the first message must be start", field="start")
                start = first.start
                if not start.command:
                    raise errors.Invalid("empty: name the command to run", field="start.command")
                target = await self._target(context, verb="Shell", zone=start.zone,
                                            workspace=start.workspace, name=start.name)
                relay.node = target.node
                if target.phase != "Running":
                    raise FailedPrecondition(
                        f"container {target.ref.workspace}/{target.ref.name} is {target.phase}: "
                        "exec needs a running container"
                    )
                agent_start = streams_pb2.AgentExecStart(
                    docker_id=target.docker_id, command=list(start.command), tty=start.tty,
                    stdin=start.stdin,
                )
                if start.HasField("size"):
                    agent_start.size.CopyFrom(start.size)
                call = (await self._stub(target)).Exec(metadata=self.link.metadata())  # type: ignore[call-arg]
                await call.write(streams_pb2.AgentExecInput(start=agent_start))
                inputs = asyncio.create_task(_relay_inputs(requests=requests, call=call))
                exited = False
                while True:
                    output = await call.read()
                    if output is grpc.aio.EOF:  # type: ignore[attr-defined]
                        break
                    yield output
                    if output.WhichOneof("output") == "exit":
                        exited = True
                        break
                if not exited:
                    raise errors.Unavailable(
                        f"the exec stream from node {target.node!r} ended without an exit code"
                    )
            finally:
                if inputs is not None:
                    inputs.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await inputs
                if call is not None:
                    call.cancel()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(streams_pb2.DESCRIPTOR.services_by_name["Streams"], self)


async def _relay_inputs(*, requests: AsyncIterator[streams_pb2.ExecInput], call: Any) -> None:
    """The caller's stdin, resizes and close-stdin, on to the agent; a second start is
    ignored (the command and container were fixed by the first)."""
    try:
        async for message in requests:
            which = message.WhichOneof("input")
            if which == "stdin":
                await call.write(streams_pb2.AgentExecInput(stdin=message.stdin))
            elif which == "resize":
                await call.write(streams_pb2.AgentExecInput(resize=message.resize))
            elif which == "close_stdin":
                await call.write(streams_pb2.AgentExecInput(close_stdin=message.close_stdin))
        await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
        log.debug("exec input relay ended: %s", exc)
