"""The ``dora-apiserver`` command as a user runs it: flags, health, reflection, signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dora.api import objects
from dora.api.client import Client
from dora.apiserver.storage import Etcd
from tests.integration.etcd import EtcdProcess, free_port


@pytest.fixture
def apiserver_process(etcd: Etcd, etcd_process: EtcdProcess) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dora.apiserver.main", "--etcd-endpoints", etcd_process.endpoint,
         "--listen", f"127.0.0.1:{port}", "--default-zone", "lab"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    yield f"127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert process.stdout is not None
    process.stdout.close()


async def wait_serving(target: str) -> health_pb2.HealthCheckResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        async with asyncio.timeout(20):
            while True:
                try:
                    return await stub.Check(health_pb2.HealthCheckRequest(
                        service="dora.api.v1.Resources"))
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)


async def test_the_command_serves_health_reflection_and_the_api(apiserver_process: str) -> None:
    response = await wait_serving(apiserver_process)
    assert response.status == health_pb2.HealthCheckResponse.SERVING

    async with grpc.aio.insecure_channel(apiserver_process) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        services = []
        async for reply in stub.ServerReflectionInfo(iter([request])):
            services = [s.name for s in reply.list_services_response.service]
            break
    assert "dora.api.v1.Resources" in services
    assert "grpc.health.v1.Health" in services

    async with Client(apiserver_process) as client:
        await client.apply(objects.new("Zone", "lab"))
        await client.apply(objects.new("Workspace", "default"))
        volume = objects.new("Volume", "home")
        volume.volume.spec.storage = "st"
        stored, _ = await client.apply(volume)
        assert stored.metadata.zone == "lab", "--default-zone applies"


def test_a_bad_flag_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dora.apiserver.main", "--no-such-flag"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr
