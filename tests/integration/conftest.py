"""The envtest idea: a real etcd (one per session, wiped between tests) and the
real apiserver in-process on a free port. Every test of this folder is marked
``integration`` here (``-m "not integration"`` runs the unit tests alone)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dora.api import client as dora_client
from dora.api import objects
from dora.apiserver.server import APIServer, Config
from dora.apiserver.storage import Etcd
from tests.integration import agent_harness
from tests.integration.etcd import EtcdProcess

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def etcd_process() -> Iterator[EtcdProcess]:
    process = EtcdProcess()
    process.start()
    yield process
    process.cleanup()


@pytest.fixture
async def etcd(etcd_process: EtcdProcess) -> AsyncIterator[Etcd]:
    """A client of the session's etcd, emptied of Dora's keys first."""
    client = Etcd([etcd_process.endpoint])
    await client.connect()
    await client.wait_ready()
    await client.delete_prefix(b"/dora/")
    yield client
    await client.close()


@pytest.fixture
def apiserver_config(etcd: Etcd, etcd_process: EtcdProcess) -> Config:
    return Config(
        etcd_endpoints=[etcd_process.endpoint], listen="127.0.0.1:0",
        bookmark_every=0.5, progress_every=0.2,
    )


@pytest.fixture
async def apiserver(apiserver_config: Config) -> AsyncIterator[APIServer]:
    server = APIServer(apiserver_config)
    await server.start()
    yield server
    await server.stop(grace=0)


@pytest.fixture
def admin_token(apiserver: APIServer) -> str:
    """The token the apiserver made at its first start on the emptied etcd."""
    assert apiserver.admin_token is not None
    return apiserver.admin_token


@pytest.fixture
async def client(apiserver: APIServer, admin_token: str) -> AsyncIterator[dora_client.Client]:
    """A client with the admin's token."""
    async with dora_client.Client(
        f"127.0.0.1:{apiserver.port}", token=admin_token, timeout=10
    ) as c:
        yield c


@pytest.fixture
async def default_scope(client: dora_client.Client) -> None:
    """The default zone and workspace, which objects without a scope land in (the
    apiserver's first start makes them; this checks they are there)."""
    await client.apply(objects.new("Zone", "default"))
    await client.apply(objects.new("Workspace", "default"))


@pytest.fixture
def docker() -> Iterator[Any]:
    """A docker-py client of the local engine (the test is skipped without one)."""
    client = agent_harness.docker_or_skip()
    yield client
    client.close()
