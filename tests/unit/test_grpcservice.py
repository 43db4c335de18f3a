"""The method tables read from the proto descriptors: every rpc of every Dora
service, with the streaming shape, parser and serializer the proto gives it."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from dora.api import grpcservice
from dora.api.v1 import coordination_pb2, resources_pb2, streams_pb2, tokens_pb2, volumes_pb2

SERVICES = [module.DESCRIPTOR.services_by_name[name] for module, name in (
    (resources_pb2, "Resources"), (coordination_pb2, "Leases"), (tokens_pb2, "Tokens"),
    (tokens_pb2, "Workspaces"), (streams_pb2, "Streams"), (streams_pb2, "AgentStreams"),
    (volumes_pb2, "VolumeFiles"), (volumes_pb2, "AgentVolumeFiles"),
)]


class Servicer:
    """Answers every rpc name with a marker of that name."""

    def __getattr__(self, name: str) -> Any:
        return f"behaviour of {name}"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_every_rpc_gets_the_shape_and_messages_of_the_proto(service: ServiceDescriptor) -> None:
    table = grpcservice.method_handlers(service, Servicer())
    assert set(table) == {m.name for m in service.methods}
    for method in service.methods:
        handler = table[method.name]
        assert handler.request_streaming == method.client_streaming
        assert handler.response_streaming == method.server_streaming
        behaviour = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                     or handler.stream_stream)
        assert behaviour == f"behaviour of {method.name}"
        request = message_factory.GetMessageClass(method.input_type)()
        assert isinstance(handler.request_deserializer(request.SerializeToString()),
                          type(request))
        response = message_factory.GetMessageClass(method.output_type)()
        assert handler.response_serializer(response) == response.SerializeToString()


def test_an_answer_already_serialized_is_sent_as_it_is() -> None:
    table = grpcservice.method_handlers(SERVICES[0], Servicer())
    obj = resources_pb2.ApplyResponse()
    obj.object.metadata.name = "x"
    serialized = obj.SerializeToString()
    assert table["Apply"].response_serializer(serialized) is serialized
    assert table["Apply"].response_serializer(obj) == serialized
