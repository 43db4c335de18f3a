"""What the daemons tell an operator: /metrics scraped as Prometheus would, /healthz and
/readyz, JSON log lines."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dora.api import errors
from dora.api.client import Client
from dora.apiserver.server import APIServer, Config
from tests.integration.controllers_harness import SimNode, TaskGroup, eventually, group, workload
from tests.integration.etcd import free_port

__all__ = ["group"]


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one family: sorted label pairs -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
async def metered(apiserver_config: Config) -> AsyncIterator[tuple[APIServer, int]]:
    port = free_port()
    server = APIServer(replace(apiserver_config, metrics_listen=f"127.0.0.1:{port}"))
    await server.start()
    yield server, port
    await server.stop(grace=0)


async def test_the_apiserver_counts_and_times_requests_by_method_and_code(
    metered: tuple[APIServer, int]
) -> None:
    server, port = metered
    assert server.admin_token is not None
    async with Client(f"127.0.0.1:{server.port}", token=server.admin_token) as client:
        for _ in range(3):
            await client.get("Zone", "default")
        with pytest.raises(errors.NotFound):
            await client.get("Zone", "nowhere")
        with pytest.raises(errors.Invalid):
            await client.get("Zone", "")
        items, _ = await client.list("Workspace")
        assert items
    async with Client(f"127.0.0.1:{server.port}", token="dora_wrong") as stranger:
        with pytest.raises(errors.Unauthenticated):
            await stranger.list("Zone")
    status, text = await asyncio.to_thread(scrape, port)
    assert status == 200
    requests = samples(text, "dora_apiserver_requests_total")
    assert requests[(("code", "OK"), ("method", "Resources/Get"))] >= 3
    assert requests[(("code", "NOT_FOUND"), ("method", "Resources/Get"))] >= 1
    assert requests[(("code", "INVALID_ARGUMENT"), ("method", "Resources/Get"))] >= 1
    assert requests[(("code", "UNAUTHENTICATED"), ("method", "Resources/List"))] >= 1
    latency = samples(text, "dora_apiserver_request_seconds_count")
    assert latency[(("method", "Resources/Get"),)] >= 5
    etcd = samples(text, "dora_etcd_request_seconds_count")
    assert sum(etcd.values()) > 0 and all(dict(k)["method"] for k in etcd)
    for path in ("/healthz", "/readyz"):
        assert (await asyncio.to_thread(scrape, port, path))[0] == 200
    assert (await asyncio.to_thread(scrape, port, "/nothing"))[0] == 404


async def test_the_controllers_say_ready_leader_and_count_reconciles(
    client: Client, group: TaskGroup, apiserver: APIServer, admin_token: str, tmp_path: Path,
    default_scope: None,
) -> None:
    await SimNode(client, "node-m").start(group)
    token_file = tmp_path / "token"
    token_file.write_text(admin_token + "\n")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dora.controllers.main",
        "--server", f"127.0.0.1:{apiserver.port}", "--token-file", str(token_file),
        "--zone", "default", "--controllers", "workload,scheduler,nodelifecycle",
        "--lease-ttl", "5", "--log-format", "json", "--log-level", "INFO",
        "--metrics-listen", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async def ready() -> bool:
            try:
                status, body = await asyncio.to_thread(scrape, port, "/readyz")
            except OSError:
                return False
            return status == 200 and body.strip() == "leader"
        await eventually(ready, within=20, what="/readyz saying leader")
        await client.apply(workload("metered", replicas=1))

        async def reconciled() -> bool:
            _, text = await asyncio.to_thread(scrape, port)
            done = samples(text, "dora_controller_reconciles_total")
            binds = samples(text, "dora_scheduler_binds_total")
            return (done.get((("controller", "workload"), ("result", "success")), 0) >= 1
                    and binds.get((), 0) >= 1)
        await eventually(reconciled, within=20, what="a reconcile and a bind counted")
        _, text = await asyncio.to_thread(scrape, port)
        assert samples(text, "dora_controller_leader")[()] == 1
        assert (await asyncio.to_thread(scrape, port, "/healthz"))[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await process.wait()
    assert process.stdout is not None
    lines = (await process.stdout.read()).decode().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and len(records) == len([line for line in lines if line.strip()])
    assert {"time", "level", "logger", "message"} <= set(records[0])
