"""The method tables read from the proto descriptors: every rpc of every Dora
service, with the streaming shape, parser and serializer the proto gives it; and
the gate every request passes (size, corrupt bytes, unknown fields)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from dora.api import errors, grpcoptions, grpcservice
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
        assert callable(behaviour)  # the servicer's, behind the request gate
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


GET = resources_pb2.DESCRIPTOR.services_by_name["Resources"].methods_by_name["Get"]


def get_parser() -> Any:
    return grpcservice.method_handlers(SERVICES[0], Servicer())["Get"].request_deserializer


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xff\xff\xff", "wire format is corrupt"),
    (b"\x0a", "wire format is corrupt"),  # a field's length missing
    (b"\x0a\x05\x22\x03\xff\xfe\xfd", "not valid UTF-8"),  # ref.name
    (b"\x0a\x03\x0a\x01\x80", "not valid UTF-8"),  # ref.kind, a lone continuation byte
])
def test_bytes_that_do_not_parse_are_invalid_naming_the_message(data: bytes, reason: str) -> None:
    parsed = get_parser()(data)
    assert isinstance(parsed, grpcservice.Rejected)
    assert isinstance(parsed.error, errors.Invalid)
    assert "dora.api.v1.GetRequest" in parsed.error.message and reason in parsed.error.message
    assert "class" not in parsed.error.message


@pytest.mark.parametrize(("method", "limit"), [
    ("Get", grpcoptions.DEFAULT_REQUEST_LIMIT), ("Apply", 3 * grpcoptions.MiB // 2),
])
def test_a_message_over_its_methods_limit_is_exhausted_unparsed(method: str, limit: int) -> None:
    parser = grpcservice.method_handlers(SERVICES[0], Servicer())[method].request_deserializer
    near = resources_pb2.GetRequest()
    near.ref.name = "n" * (limit - 16)
    assert len(near.SerializeToString()) <= limit
    assert not isinstance(parser(near.SerializeToString()), grpcservice.Rejected)
    for size in (limit + 1, 4 * grpcoptions.MiB):
        parsed = parser(b"\xff" * size)  # not parsed: it would be corrupt
        assert isinstance(parsed, grpcservice.Rejected)
        assert isinstance(parsed.error, errors.Exhausted)
        assert f"at most {limit}" in parsed.error.message


def test_unknown_fields_are_dropped_at_every_depth() -> None:
    request = resources_pb2.GetRequest()
    request.ref.name = "x"
    known = request.SerializeToString()
    # Field 99 at the top, field 77 inside ref: neither is in the proto.
    ref = request.ref.SerializeToString() + b"\xea\x04\x03abc"
    data = b"\x0a" + bytes([len(ref)]) + ref + b"\x98\x06\x01"
    parsed = get_parser()(data)
    assert parsed.ref.name == "x"
    assert parsed.SerializeToString() == known
