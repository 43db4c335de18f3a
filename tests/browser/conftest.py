"""A real cluster for the web app's tests: the integration suite's etcd and in-process
apiserver (``tests/integration/conftest.py``), and ``dora-web`` as a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dora.apiserver.server import APIServer
from tests.browser.gateway import Gateway, running_gateway
from tests.integration.conftest import (
    admin_token,
    apiserver,
    apiserver_config,
    client,
    default_scope,
    docker,
    etcd,
    etcd_process,
)

__all__ = ["admin_token", "apiserver", "apiserver_config", "client", "default_scope",
           "docker", "etcd", "etcd_process"]


@pytest.fixture
def gateway(apiserver: APIServer, tmp_path: Path) -> Iterator[Gateway]:
    with running_gateway(apiserver.port, tmp_path / "dora-web.log") as gw:
        yield gw
