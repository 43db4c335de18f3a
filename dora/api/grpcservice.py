"""A servicer's gRPC method table, read from the service's proto descriptor.

Every Dora service (the apiserver's and the agent's) is a class with one
coroutine per rpc, named as in the ``.proto``. The table that tells gRPC how to
call each (unary or streaming on either side, which message to parse, how to
write the answer) is all in the descriptor, so it is derived here once rather
than written out by hand beside each servicer, where it could drift from the
proto.

A handler may return (or yield) a message or that message already serialized:
the apiserver sends what its watch cache serialized once as it is.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

_MAKERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def method_handlers(service: ServiceDescriptor,
                    servicer: object) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The handler of each rpc of ``service``: ``servicer``'s method of that name."""
    return {method.name: _handler(method, getattr(servicer, method.name))
            for method in service.methods}


def handler(service: ServiceDescriptor, servicer: object) -> grpc.GenericRpcHandler[Any, Any]:
    """``method_handlers`` as one handler for ``grpc.aio.Server.add_generic_rpc_handlers``."""
    return grpc.method_handlers_generic_handler(service.full_name,
                                                method_handlers(service, servicer))


def _handler(method: MethodDescriptor, behaviour: Any) -> grpc.RpcMethodHandler[Any, Any]:
    request = message_factory.GetMessageClass(method.input_type)
    serialize = message_factory.GetMessageClass(method.output_type).SerializeToString

    def serializer(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    make = _MAKERS[(method.client_streaming, method.server_streaming)]
    return make(behaviour, request_deserializer=request.FromString,
                response_serializer=serializer)
