"""The watch cache frames serialized objects itself (``WatchEvent``, ``ListResponse``):
the bytes must be what protobuf would have written, and parse back to the same."""

from __future__ import annotations

import pytest

from dora.api import objects
from dora.api.v1 import resources_pb2
from dora.apiserver.watchcache import _TYPE_FIELD, message_field, varint

EventType = resources_pb2.WatchEvent.Type


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16_383, 16_384, 2**31, 2**63 - 1])
def test_varint_is_protobufs(value: int) -> None:
    message = resources_pb2.ListResponse(resource_version=value)
    expected = message.SerializeToString()
    assert (b"\x10" + varint(value) == expected) if value else expected == b""


@pytest.mark.parametrize("event_type", [EventType.ADDED, EventType.MODIFIED, EventType.DELETED])
@pytest.mark.parametrize("padding", [0, 100, 20_000])
def test_a_framed_event_is_the_serialized_watch_event(event_type: int, padding: int) -> None:
    obj = objects.new("Workload", "w", zone="z", workspace="ws")
    obj.metadata.annotations["pad"] = "x" * padding
    obj.metadata.resource_version = 123_456_789
    framed = _TYPE_FIELD[event_type] + message_field(2, obj.SerializeToString())
    assert framed == resources_pb2.WatchEvent(type=event_type, object=obj).SerializeToString()


def test_a_list_assembled_from_pieces_parses_back() -> None:
    items = [objects.new("Workload", f"w{i}", zone="z", workspace="ws") for i in range(3)]
    pieces = [message_field(1, o.SerializeToString()) for o in items]
    tail = resources_pb2.ListResponse(resource_version=42).SerializeToString()
    parsed = resources_pb2.ListResponse.FromString(b"".join([*pieces, tail]))
    assert list(parsed.items) == items and parsed.resource_version == 42
