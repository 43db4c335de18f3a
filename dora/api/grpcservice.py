"""A servicer's gRPC method table, read from the service's proto descriptor.

Every Dora service (the apiserver's and the agent's) is a class with one
coroutine per rpc, named as in the ``.proto``. The table that tells gRPC how to
call each (unary or streaming on either side, which message to parse, how to
write the answer) is all in the descriptor, so it is derived here once rather
than written out by hand beside each servicer, where it could drift from the
proto.

A handler may return (or yield) a message or that message already serialized:
the apiserver sends what its watch cache serialized once as it is.

Every request message passes one gate before a servicer sees it: larger than its
method's limit (``grpcoptions.request_limit``) is ``RESOURCE_EXHAUSTED``; bytes
that do not parse (corrupt wire format, a string that is not UTF-8) are
``INVALID_ARGUMENT`` naming the message type, never gRPC's ``UNKNOWN`` with a
Python class name; fields this server does not know are dropped (Kubernetes
prunes unknown fields), so nothing unknown is stored and served back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from dora.api import errors, grpcoptions

_MAKERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def with_behavior(handler: grpc.RpcMethodHandler[Any, Any],
                  behavior: Any) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of ``handler``'s shape (streaming sides, (de)serializers) that runs
    ``behavior`` instead: what a server interceptor returns to wrap or refuse a call."""
    make: Any = _MAKERS[(handler.request_streaming, handler.response_streaming)]
    return make(behavior, request_deserializer=handler.request_deserializer,  # type: ignore[no-any-return]
                response_serializer=handler.response_serializer)


def method_handlers(
    service: ServiceDescriptor, servicer: object, *, checks_itself: frozenset[str] = frozenset()
) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The handler of each rpc of ``service``: ``servicer``'s method of that name.
    The methods in ``checks_itself`` (hot streams) are handed a ``Rejected`` request
    as it is and call ``check`` first, saving a wrapper per message sent."""
    return {method.name: _handler(method, getattr(servicer, method.name),
                                  grpcoptions.request_limit(service.full_name, method.name),
                                  gated=method.name not in checks_itself)
            for method in service.methods}


def handler(service: ServiceDescriptor, servicer: object) -> grpc.GenericRpcHandler[Any, Any]:
    """``method_handlers`` as one handler for ``grpc.aio.Server.add_generic_rpc_handlers``."""
    return grpc.method_handlers_generic_handler(service.full_name,
                                                method_handlers(service, servicer))


class Rejected:
    """A request message that did not pass the gate, in place of the message."""

    __slots__ = ("error",)

    def __init__(self, error: errors.DoraError) -> None:
        self.error = error


def deserializer(request: Any, limit: int) -> Any:
    """Parse a request of class ``request``, or a ``Rejected`` saying why not."""
    name = request.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        if len(data) > limit:
            return Rejected(errors.Exhausted(
                f"the {name} message is {len(data)} bytes; at most {limit} are accepted"))
        try:
            parsed = request.FromString(data)
        except message.DecodeError as exc:
            reason = "a string is not valid UTF-8" if "UTF-8" in str(exc) else \
                "the wire format is corrupt"
            return Rejected(errors.Invalid(f"cannot parse the {name} message: {reason}"))
        parsed.DiscardUnknownFields()
        return parsed

    return parse


def check(request: Any) -> None:
    """Raise the error of a ``Rejected`` request (for ``checks_itself`` methods)."""
    if isinstance(request, Rejected):
        raise request.error


async def reject(context: Any, error: errors.DoraError) -> None:
    code, text, trailers = errors.to_status(error)
    await context.abort(code, text, trailing_metadata=trailers)


def _gated(behaviour: Any, client_streaming: bool, server_streaming: bool) -> Any:
    """``behaviour``, refusing a ``Rejected`` request before it sees it."""
    if client_streaming:
        async def checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Rejected):
                    await reject(context, request.error)
                yield request

        if server_streaming:
            async def bidi(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
                async for response in behaviour(checked(requests, context), context):
                    yield response
            return bidi

        async def client_stream(requests: AsyncIterator[Any], context: Any) -> Any:
            return await behaviour(checked(requests, context), context)
        return client_stream

    if server_streaming:
        async def server_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, Rejected):
                await reject(context, request.error)
            async for response in behaviour(request, context):
                yield response
        return server_stream

    async def unary(request: Any, context: Any) -> Any:
        if isinstance(request, Rejected):
            await reject(context, request.error)
        return await behaviour(request, context)
    return unary


def _handler(method: MethodDescriptor, behaviour: Any, limit: int, *,
             gated: bool = True) -> grpc.RpcMethodHandler[Any, Any]:
    request = message_factory.GetMessageClass(method.input_type)
    serialize = message_factory.GetMessageClass(method.output_type).SerializeToString

    def serializer(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    make = _MAKERS[(method.client_streaming, method.server_streaming)]
    if gated:
        behaviour = _gated(behaviour, method.client_streaming, method.server_streaming)
    return make(behaviour,
                request_deserializer=deserializer(request, limit),
                response_serializer=serializer)
