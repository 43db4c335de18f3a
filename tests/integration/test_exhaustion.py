"""No one exhausts the apiserver: calls are refused before their bodies are read
when the caller is not authenticated, each user's calls in flight are bounded,
so are token lookups, and a flood of large anonymous Applies leaves resident
memory where it was (a real ``dora-apiserver`` process, measured in /proc)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dora.api import errors, objects
from dora.api.client import Client
from dora.apiserver.gate import Limits
from dora.apiserver.server import APIServer, Config
from dora.apiserver.storage import Etcd
from tests.eventually import eventually
from tests.integration.etcd import EtcdProcess, free_port
from tests.integration.test_apiserver_process import Running, start, stop, wait_serving

FUTURE = 10**15  # a Get at this version waits ~1 s, then is refused: a slow call


@pytest.fixture
async def tight(apiserver_config: Config) -> AsyncIterator[APIServer]:
    apiserver_config.limits = Limits(per_user=2, per_user_queue=1, unauthenticated=1,
                                     unauthenticated_queue=0, wait=0.2)
    server = APIServer(apiserver_config)
    await server.start()
    yield server
    await server.stop(grace=0)


async def outcome(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except errors.DoraError as exc:
        return type(exc).__name__
    return "ok"


async def test_a_users_calls_in_flight_are_bounded_and_others_go_on(tight: APIServer) -> None:
    target = f"127.0.0.1:{tight.port}"
    assert tight.admin_token is not None
    async with Client(target, token=tight.admin_token, timeout=10) as admin:
        await admin.apply(objects.new("Zone", "default"))
        token, _ = await admin.create_token("admin", "default", "second")
        slow = [asyncio.create_task(outcome(admin.get("Zone", "default",
                                                      resource_version=FUTURE)))
                for _ in range(8)]
        await eventually(lambda: tight.gate.users.held("admin") == 2,
                         what="the two slow calls admitted", within=5)
        # The same user's 9th call is refused too; the gate counts the user, not the token.
        async with Client(target, token=token, timeout=10) as same_user:
            assert await outcome(same_user.get("Zone", "default")) == "Exhausted"
        results = await asyncio.gather(*slow)
        # 2 ran (refused as too large), 1 waited 0.2 s and 5 were refused at once.
        assert sorted(results) == ["Exhausted"] * 6 + ["Invalid"] * 2
        assert tight.gate.users.held("admin") == 0
        assert (await admin.get("Zone", "default")).metadata.name == "default"


async def test_token_lookups_are_bounded_and_refusals_are_clean(tight: APIServer) -> None:
    target = f"127.0.0.1:{tight.port}"

    async def anonymous(token: str | None) -> str:
        async with Client(target, token=token, timeout=10) as stranger:
            return await outcome(stranger.get("Zone", "default"))

    results = await asyncio.gather(*(anonymous(f"dora_{secrets.token_hex(8)}")
                                     for _ in range(30)), anonymous(None))
    assert set(results) <= {"Unauthenticated", "Exhausted"}
    assert "Unauthenticated" in results
    assert tight.gate.lookups.held("") == 0


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def process(etcd: Etcd, etcd_process: EtcdProcess, tmp_path: Path) -> AsyncIterator[Running]:
    running = start(etcd_process, tmp_path / "admin.token", free_port())
    yield running  # type: ignore[misc]
    stop(running)


async def test_a_flood_of_large_anonymous_applies_leaves_memory_flat(process: Running) -> None:
    await wait_serving(process.target)
    token = process.token_file.read_text().strip()
    async with Client(process.target, token=token) as admin:
        await admin.get("Zone", "lab")  # warm: every path of an ordinary call taken
    await asyncio.sleep(0.5)
    idle = rss(process.process.pid)
    apply = "/dora.api.v1.Resources/Apply"
    # 4 MB: over every limit; 1 MB: within the transport's, refused at the gate.
    bodies = {size: b"\x0a" + os.urandom(16) + b"x" * size for size in (4_000_000, 1_000_000)}
    counts: dict[str, int] = {}
    async with grpc.aio.insecure_channel(
        process.target, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary(apply)

        async def send(body: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
            try:
                await call(body, metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as exc:
                counts[exc.code().name] = counts.get(exc.code().name, 0) + 1

        for _round in range(5):
            await asyncio.gather(*(
                send(bodies[size], metadata)
                for size in bodies
                for metadata in ((), (("authorization", "Bearer dora_not_a_token"),))
                for _ in range(10)
            ))
    assert sum(counts.values()) == 200
    assert set(counts) <= {"UNAUTHENTICATED", "RESOURCE_EXHAUSTED"}, counts
    assert counts.get("UNAUTHENTICATED", 0) >= 50, "the 1 MB ones are refused by the gate"
    peak = rss(process.process.pid)
    # Freed memory goes back to the system within a trim period (5 s) or two.
    bound = 2 * idle + 50 * 2**20
    for _ in range(30):
        await asyncio.sleep(0.5)
        after = rss(process.process.pid)
        if after <= idle + 16 * 2**20:
            break
    print(f"apiserver RSS idle {idle / 2**20:.0f} MiB, right after 200 refused Applies "
          f"{peak / 2**20:.0f} MiB, then {after / 2**20:.0f} MiB")
    assert after <= bound, (idle, after)
    async with Client(process.target, token=token) as admin:
        assert (await admin.get("Zone", "lab")).metadata.name == "lab"
