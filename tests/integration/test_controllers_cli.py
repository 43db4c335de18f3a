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


async def test_zones_served_by_one_process_and_a_zone_nobody_serves_is_marked(
        client: Client, group: TaskGroup, apiserver: APIServer, admin_token: str,
        tmp_path: Path) -> None:
    from dora.api import objects
    from dora.controllers import conditions
    from dora.controllers.zones import ZONE_UNSERVED

    for zone in ("zone-a", "zone-b", "dc-rov-01"):
        await client.apply(objects.new("Zone", zone))
    await SimNode(client, "node-b", zone="zone-b").start(group)
    token_file = tmp_path / "token"
    token_file.write_text(admin_token + "\n")

    def start(zones: str) -> asyncio.Future[asyncio.subprocess.Process]:
        return asyncio.ensure_future(asyncio.create_subprocess_exec(
            sys.executable, "-m", "dora.controllers.main",
            "--server", f"127.0.0.1:{apiserver.port}", "--token-file", str(token_file),
            "--zones", zones, "--controllers", "workload,scheduler", "--identity", zones,
            "--lease-ttl", "5", "--unserved-grace", "1", "--log-level", "WARNING",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))

    some = await start("zone-a,zone-b")
    everything: asyncio.subprocess.Process | None = None
    try:
        async def leads(zone: str, holder: str) -> bool:
            try:
                lease = await client.get("Lease", conventions.CONTROLLERS_LEASE, zone=zone)
            except errors.NotFound:
                return False
            return lease.lease.spec.holder == holder
        for zone in ("zone-a", "zone-b"):
            await eventually(lambda z=zone: leads(z, "zone-a,zone-b"), within=15,  # type: ignore[misc]
                             what=f"the process leading {zone}")
        served = workload("served", zone="zone-b")
        await client.apply(served)
        await eventually(lambda: _all_running(client, "served", "zone-b"), within=15,
                         what="the workload of zone-b running")

        rover = workload("rover", zone="dc-rov-01")
        await client.apply(rover)

        async def marked() -> str:
            wl = await client.get("Workload", "rover", zone="dc-rov-01")
            found = conditions.get(wl.workload.status.conditions, ZONE_UNSERVED)
            return found.message if found is not None and found.status == "True" else ""
        message = await eventually(marked, within=10, what="the ZoneUnserved condition")
        assert "no dora-controllers serves zone dc-rov-01" in message
        assert "--zones dc-rov-01, or --zones all" in message
        from dora.ctl import columns
        assert columns.workload_status(await client.get("Workload", "rover",
                                                        zone="dc-rov-01")) == "ZoneUnserved"

        async def warned() -> bool:
            events, _ = await client.list("Event", zone="dc-rov-01")
            return any(e.event.spec.reason == "ZoneUnserved" for e in events)
        await eventually(warned, within=10, what="the ZoneUnserved event")

        # --zones all serves every zone, dc-rov-01 too: the condition goes.
        everything = await start("all")

        async def cleared() -> bool:
            return not await marked()
        await eventually(cleared, within=20, what="the condition cleared")
        assert await leads("dc-rov-01", "all")
    finally:
        for process in (some, everything):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(10):
                    await process.wait()


async def _all_running(client: Client, name: str, zone: str) -> bool:
    live = await containers(client, name, zone=zone)
    return bool(live) and all(c.container.status.phase == "Running" for c in live)
