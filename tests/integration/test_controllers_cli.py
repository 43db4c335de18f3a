"""The ``dora-controllers`` command, as a process: flags, token file, leading, placing,
and a graceful stop that hands the lease back."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from dora.api import conventions, errors
from dora.api.client import Client
from dora.apiserver.server import APIServer
from tests.integration.controllers_harness import (
    SimNode,
    TaskGroup,
    containers,
    eventually,
    group,
    workload,
)

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]


async def test_the_command_leads_places_and_stops_gracefully(
        client: Client, group: TaskGroup, apiserver: APIServer, admin_token: str,
        tmp_path: Path) -> None:
    await SimNode(client, "node-a").start(group)
    token_file = tmp_path / "token"
    token_file.write_text(admin_token + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dora.controllers.main",
        "--server", f"127.0.0.1:{apiserver.port}", "--token-file", str(token_file),
        "--zone", "default", "--controllers", "workload,scheduler,nodelifecycle",
        "--identity", "cli-replica", "--lease-ttl", "5", "--log-level", "WARNING",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async def leading() -> bool:
            lease = await client.get("Lease", conventions.CONTROLLERS_LEASE, zone="default")
            return lease.lease.spec.holder == "cli-replica"
        await eventually(leading, within=15, what="the command leading")

        await client.apply(workload("cli", replicas=2))

        async def running() -> bool:
            live = await containers(client, "cli")
            return len(live) == 2 and all(c.container.status.phase == "Running" for c in live)
        await eventually(running, within=15, what="2 running containers")

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            code = await process.wait()
        assert code == 0

        async def released() -> bool:
            try:
                await client.get("Lease", conventions.CONTROLLERS_LEASE, zone="default")
            except errors.NotFound:
                return True
            return False
        await eventually(released, within=2, what="the lease given back at once")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        assert process.stdout is not None
        output = (await process.stdout.read()).decode()
        assert "Traceback" not in output, output


async def test_bad_flags_exit_2(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dora.controllers.main", "--controllers", "workload,bogus",
        "--server", "127.0.0.1:1", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert b"unknown controllers: bogus" in err
