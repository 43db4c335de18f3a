"""Driving the docker-compose cluster from outside, as a user and an operator would:
``doractl`` against the published apiserver ports, ``docker`` and ``docker-compose``
for the faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker

HERE = Path(__file__).parent
COMPOSE = ["docker-compose", "-p", "dora-e2e", "-f", str(HERE / "docker-compose.yaml")]
APISERVERS = ("127.0.0.1:13000", "127.0.0.1:13001")
ZONE = "e2e"

T = TypeVar("T")


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMPOSE, *args], check=check, capture_output=True, text=True,
                          timeout=300)


def eventually(what: str, probe: Callable[[], T | None], *, within: float = 60.0,
               every: float = 1.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (subprocess.CalledProcessError, AssertionError) as exc:
            last = None
            error = exc
        else:
            error = None
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what} "
                         f"(last: {last!r}, error: {error!r})")


class Doractl:
    """``doractl`` with the admin token against one apiserver (or another)."""

    def __init__(self, token: str, server: str = APISERVERS[0], *, config: Path) -> None:
        self.token = token
        self.server = server
        self.config = config

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None,
                 server: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DORA_CONFIG": str(self.config), "DORA_TOKEN": self.token,
               "DORA_SERVER": server or self.server}
        result = subprocess.run(
            [sys.executable, "-m", "dora.ctl", "-z", ZONE, "-g", "default", *args],
            capture_output=True, text=True, env=env, input=stdin, timeout=120, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"doractl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def objects(self, kind: str, *args: str, server: str | None = None) -> list[dict[str, Any]]:
        data = json.loads(self("get", kind, *args, "-o", "json", server=server).stdout or "{}")
        if not data:
            return []
        return data["items"] if data.get("kind") == "List" else [data]

    def containers(self, workload: str) -> list[dict[str, Any]]:
        return [c for c in self.objects("containers")
                if c.get("spec", {}).get("workload") == workload]


def running_on(containers: list[dict[str, Any]]) -> list[str]:
    """The node of every Running container."""
    return sorted(c["status"].get("nodeName", "") for c in containers
                  if c.get("status", {}).get("phase") == "Running")


def docker_containers(workload: str) -> list[Any]:
    """The Docker containers Dora runs for ``workload`` (any node), running ones."""
    client = docker.from_env()
    try:
        for _ in range(20):
            try:
                return list(client.containers.list(
                    filters={"label": [f"dora.zone={ZONE}", f"dora.workload={workload}"]}))
            except docker.errors.NotFound:
                continue  # removed between docker-py's list and its inspect of it
        raise AssertionError(f"the containers of {workload} kept vanishing while listed")
    finally:
        client.close()
