"""The e2e cluster: docker-compose up once for the session, down -v at the end.

The images (dora/dora, dora/etcd, dora/busybox) are built by `make e2e` before
pytest starts (hack/suite.sh); nothing is pulled.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from e2e.cluster import ZONE, Doractl, compose, eventually

LOCAL_STORAGE = "/tmp/dora-e2e-storage"


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    compose("down", "-v", check=False)
    _remove_workload_containers()
    compose("up", "-d")
    try:
        token = eventually(
            "the admin token",
            lambda: compose("exec", "-T", "apiserver-1", "cat", "/shared/admin.token"
                            ).stdout.strip(),
            within=120,
        )
        yield token
    finally:
        logs = compose("logs", "--no-color", "--tail", "200", check=False).stdout
        Path(__file__).with_name("last-run.log").write_text(logs)
        compose("down", "-v", check=False)
        _remove_workload_containers()


@pytest.fixture
def ctl(cluster: str, tmp_path: Path) -> Doractl:
    ctl = Doractl(cluster, config=tmp_path / "config.yaml")
    eventually("both nodes Ready", lambda: _nodes_ready(ctl), within=120)
    return ctl


def _nodes_ready(ctl: Doractl) -> bool:
    nodes = ctl.objects("nodes")
    return len(nodes) == 2 and all(n.get("status", {}).get("phase") == "Ready" for n in nodes)


def _remove_workload_containers() -> None:
    """What the agents leave on the engine: workload containers, the Docker volumes
    of Dora volumes, and the Local storage's directory (cluster.yaml)."""
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": f"dora.zone={ZONE}"}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"label": f"dora.zone={ZONE}"}):
            volume.remove(force=True)
    finally:
        client.close()
    shutil.rmtree(LOCAL_STORAGE, ignore_errors=True)
