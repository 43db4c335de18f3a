"""The apiserver's gRPC health tells the truth: NOT_SERVING while its etcd does not
answer, SERVING again once it does (its own etcd here, stopped and restarted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dora.apiserver.server import APIServer, Config
from tests.eventually import eventually
from tests.integration.etcd import EtcdProcess

Status = health_pb2.HealthCheckResponse


@pytest.fixture
def own_etcd() -> Iterator[EtcdProcess]:
    process = EtcdProcess()
    process.start()
    yield process
    process.cleanup()


@pytest.fixture
async def server(own_etcd: EtcdProcess) -> AsyncIterator[APIServer]:
    config = Config(etcd_endpoints=[own_etcd.endpoint], listen="127.0.0.1:0",
                    health_every=0.2, health_timeout=0.5)
    apiserver = APIServer(config)
    await apiserver.start()
    yield apiserver
    await apiserver.stop(grace=0)


async def statuses(port: int) -> set[int]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {(await stub.Check(health_pb2.HealthCheckRequest(service=name))).status
                for name in ("", "dora.api.v1.Resources")}


async def until(port: int, wanted: int, within: float = 15.0) -> float:
    """Seconds until every service answers ``wanted``."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def answered() -> bool:
        return await statuses(port) == {wanted}

    await eventually(answered, what=f"health {wanted}", within=within, every=0.1)
    return loop.time() - started


async def test_health_is_not_serving_while_etcd_is_unreachable(
    server: APIServer, own_etcd: EtcdProcess
) -> None:
    assert await statuses(server.port) == {Status.SERVING}
    for _ in range(2):  # down and up twice: it follows every change
        own_etcd.stop()
        assert await until(server.port, Status.NOT_SERVING) < 5
        own_etcd.start()
        assert await until(server.port, Status.SERVING) < 10
