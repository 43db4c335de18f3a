"""What every request passes before a service sees it, on the real gRPC server:
bytes that do not parse are INVALID_ARGUMENT (no Python class name), a message
over its method's limit is RESOURCE_EXHAUSTED, unknown fields are dropped (never
stored and served back), and a Get or Delete without a name names the field."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from dora.api import errors, objects
from dora.api.client import Client
from dora.api.v1 import resources_pb2
from dora.apiserver.server import APIServer
from dora.apiserver.storage import Etcd

pytestmark = pytest.mark.usefixtures("default_scope")

WIRE_CORRUPT = [b"\xff\xff\xff", b"\x0a", b"\x0a\x85"]
NOT_UTF8 = b"\x03\xff\xfe\xfd"  # a length, then three bytes that are no UTF-8
# Per method: a request whose first string field holds NOT_UTF8.
BAD_STRING = {
    "/dora.api.v1.Resources/Get": b"\x0a\x05\x22" + NOT_UTF8,  # ref.name
    "/dora.api.v1.Resources/Apply": b"\x0a\x05\x12" + NOT_UTF8,  # object.kind
    "/dora.api.v1.Resources/List": b"\x0a" + NOT_UTF8,  # kind
    "/dora.api.v1.Resources/Watch": b"\x0a" + NOT_UTF8,  # kind
    "/dora.api.v1.Tokens/Create": b"\x0a" + NOT_UTF8,  # user
}
CASES = [(path, "stream" if path.endswith("Watch") else "", body)
         for path in BAD_STRING for body in [*WIRE_CORRUPT, BAD_STRING[path]]]
CASES += [("/dora.api.v1.Leases/KeepAlive", "bidi", body) for body in WIRE_CORRUPT]


@pytest.fixture
async def channel(apiserver: APIServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{apiserver.port}") as ch:
        yield ch


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def raw_call(channel: grpc.aio.Channel, path: str, body: bytes, token: str,
                   *, streaming: bool = False, client_streaming: bool = False) -> None:
    metadata = bearer(token)
    if client_streaming:
        async def requests() -> AsyncIterator[bytes]:
            yield body

        call = channel.stream_stream(path)(requests(), metadata=metadata)
        async for _ in call:
            pass
    elif streaming:
        async for _ in channel.unary_stream(path)(body, metadata=metadata):
            pass
    else:
        await channel.unary_unary(path)(body, metadata=metadata)


@pytest.mark.parametrize(("path", "shape", "body"), CASES)
async def test_bytes_that_do_not_parse_are_invalid_argument(
    channel: grpc.aio.Channel, admin_token: str, path: str, shape: str, body: bytes
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(channel, path, body, admin_token, streaming=shape == "stream",
                       client_streaming=shape == "bidi")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    details = caught.value.details() or ""
    assert "cannot parse the dora.api.v1." in details
    assert "class" not in details and "DecodeError" not in details


async def test_a_message_over_its_methods_limit_is_resource_exhausted(
    channel: grpc.aio.Channel, admin_token: str, client: Client
) -> None:
    big = objects.new("Zone", "big")
    big.metadata.annotations["blob"] = "x" * (100 * 1024)
    # 100 KiB is fine for an Apply (up to 1.5 MiB), too much for a Get.
    applied, _ = await client.apply(big)
    assert len(applied.metadata.annotations["blob"]) == 100 * 1024
    request = b"\x0a" + b"\x80\x90\x06" + b"\x22" + b"\x80\x90\x06" + b"n" * (100 * 1024)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(channel, "/dora.api.v1.Resources/Get", request, admin_token)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 65536" in (caught.value.details() or "")
    for size in (2 * 1024 * 1024, 4 * 1024 * 1024):
        huge = objects.new("Zone", "huge")
        huge.metadata.annotations["blob"] = "x" * size
        with pytest.raises(errors.Exhausted):
            await client.apply(huge)
    with pytest.raises(errors.NotFound):
        await client.get("Zone", "huge")


async def test_unknown_fields_are_dropped_not_stored_and_served_back(
    channel: grpc.aio.Channel, admin_token: str, client: Client, etcd: Etcd
) -> None:
    obj = objects.new("Zone", "unknowns")
    obj.zone.spec.endpoint = "https://z.example"
    known = obj.SerializeToString()
    # Field 900 at the top of the Object, and field 901 inside its metadata.
    metadata = obj.metadata.SerializeToString() + b"\xaa\x38\x05hello"
    sneaky = obj.SerializeToString() + b"\xa2\x38\x03abc"
    nested = b"\x1a" + bytes([len(metadata)]) + metadata  # metadata (field 3) again: merged
    request = b"\x0a" + bytes([len(sneaky + nested)]) + sneaky + nested
    await raw_call(channel, "/dora.api.v1.Resources/Apply", request, admin_token)
    stored = await etcd.get(b"/dora/zones/unknowns")
    assert stored is not None
    for marker in (b"hello", b"abc"):
        assert marker not in stored.value
    served = await client.get("Zone", "unknowns")
    assert served.zone.spec.endpoint == "https://z.example"
    assert b"hello" not in served.SerializeToString() and len(known) > 0
    raw = await channel.unary_unary("/dora.api.v1.Resources/Get")(
        resources_pb2.GetRequest(ref=resources_pb2.ObjectRef(kind="Zone", name="unknowns"))
        .SerializeToString() + b"\xa2\x38\x01z", metadata=bearer(admin_token))
    assert b"hello" not in raw and b"abc" not in raw


@pytest.mark.parametrize("call", ["get", "delete"])
@pytest.mark.parametrize("kind", ["Zone", "Workload"])
async def test_a_get_or_delete_without_a_name_names_the_field(
    client: Client, call: str, kind: str
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        if call == "get":
            await client.get(kind, "")
        else:
            await client.delete(kind, "")
    assert [v.field for v in caught.value.violations] == ["ref.name"]
    assert "ref.name" in caught.value.message


async def test_a_service_reached_without_the_gate_refuses_every_call(
        apiserver: APIServer, admin_token: str) -> None:
    """Only the gate authenticates; a service it does not guard fails closed, even
    for a good token (no principal was bound to the call)."""
    from dora.apiserver.services.resources import SERVICE, ResourcesService

    service = ResourcesService(registry=apiserver.registry, cache=apiserver.cache,
                               authorizer=apiserver.authorizer)
    server = grpc.aio.server()  # no interceptors
    server.add_registered_method_handlers(SERVICE, service.methods())  # type: ignore[attr-defined]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with Client(f"127.0.0.1:{port}", token=admin_token) as unguarded:
            with pytest.raises(errors.Unauthenticated):
                await unguarded.get("Zone", "default")
            with pytest.raises(errors.Unauthenticated):
                async for _ in unguarded.watch("Zone"):
                    break
        async with Client(f"127.0.0.1:{apiserver.port}", token=admin_token) as guarded:
            assert (await guarded.get("Zone", "default")).metadata.name == "default"
    finally:
        await server.stop(0)
