"""The ``dora-apiserver`` command as a user runs it: flags, health, reflection, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dora.api import objects
from dora.api.client import Client
from dora.apiserver.storage import Etcd
from tests.eventually import eventually
from tests.integration.etcd import EtcdProcess, free_port


@dataclass
class Running:
    target: str
    token_file: Path
    process: subprocess.Popen[bytes]


def start(etcd_process: EtcdProcess, token_file: Path, port: int,
          *extra: str) -> Running:
    process = subprocess.Popen(
        [sys.executable, "-m", "dora.apiserver.main", "--etcd-endpoints", etcd_process.endpoint,
         "--listen", f"127.0.0.1:{port}", "--default-zone", "lab",
         "--admin-token-file", str(token_file), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    return Running(f"127.0.0.1:{port}", token_file, process)


def stop(running: Running) -> bytes:
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(15) == 0
    assert running.process.stdout is not None
    output = running.process.stdout.read()
    running.process.stdout.close()
    return output


@pytest.fixture
def apiserver_process(etcd: Etcd, etcd_process: EtcdProcess, tmp_path: Path) -> Iterator[Running]:
    running = start(etcd_process, tmp_path / "admin.token", free_port())
    yield running
    stop(running)


async def wait_serving(target: str) -> health_pb2.HealthCheckResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def check() -> health_pb2.HealthCheckResponse:
            return await stub.Check(health_pb2.HealthCheckRequest(
                service="dora.api.v1.Resources"))

        return await eventually(check, what=f"the apiserver at {target} serving",
                                within=20, every=0.1, ignore=(grpc.aio.AioRpcError,))


async def test_the_command_serves_health_reflection_and_the_api(
    apiserver_process: Running,
) -> None:
    target = apiserver_process.target
    response = await wait_serving(target)
    assert response.status == health_pb2.HealthCheckResponse.SERVING

    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        services = []
        async for reply in stub.ServerReflectionInfo(iter([request])):
            services = [s.name for s in reply.list_services_response.service]
            break
    assert "dora.api.v1.Resources" in services
    assert "grpc.health.v1.Health" in services

    token = apiserver_process.token_file.read_text().strip()
    assert apiserver_process.token_file.stat().st_mode & 0o777 == 0o600
    async with Client(target, token=token) as client:
        assert (await client.whoami()).user == "admin"
        await client.get("Zone", "lab")
        volume = objects.new("Volume", "home")
        volume.volume.spec.storage = "st"
        stored, _ = await client.apply(volume)
        assert stored.metadata.zone == "lab", "--default-zone applies"


async def test_the_admin_token_is_made_once(
    etcd: Etcd, etcd_process: EtcdProcess, tmp_path: Path
) -> None:
    first = start(etcd_process, tmp_path / "first.token", free_port())
    await wait_serving(first.target)
    output = stop(first)
    token = first.token_file.read_text().strip()
    # In the 0600 file only: the log (read by many) names the file, never the token.
    assert token.encode() not in output and str(first.token_file).encode() in output
    assert first.token_file.stat().st_mode & 0o777 == 0o600
    again = start(etcd_process, tmp_path / "again.token", free_port())
    await wait_serving(again.target)
    output = stop(again)
    assert not again.token_file.exists() and token.encode() not in output
    restarted = start(etcd_process, tmp_path / "third.token", free_port())
    await wait_serving(restarted.target)
    async with Client(restarted.target, token=token) as client:
        assert (await client.whoami()).user == "admin", "the first token still works"
    stop(restarted)


def test_a_bad_flag_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dora.apiserver.main", "--no-such-flag"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr


async def test_json_logs_and_an_audit_log_from_the_flags(
    etcd: Etcd, etcd_process: EtcdProcess, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    running = start(etcd_process, tmp_path / "admin.token", free_port(),
                    "--log-format", "json", "--audit-log", str(audit))
    await wait_serving(running.target)
    token = running.token_file.read_text().strip()
    async with Client(running.target, token=token) as client:
        await client.apply(objects.new("Workspace", "logged"))
    output = stop(running).decode()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    assert any("listening" in e["message"] for e in lines)
    [entry] = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (entry["user"], entry["verb"], entry["kind"], entry["name"], entry["result"]) == (
        "admin", "Apply", "Workspace", "logged", "CREATED")
