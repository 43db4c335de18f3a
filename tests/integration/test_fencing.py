"""Nothing runs twice by Dora's doing: agents fence themselves when cut off, the
controllers replace only after the lease TTL plus a margin (or at once when a
workload says ``Eager``, or an administrator fences the node), and a fenced node's
agent runs nothing when it comes back.

The partition is a real one at the TCP level: the cut-off agent reaches the
apiserver through a proxy that the test closes (every connection dropped, new ones
refused) and opens again. Both agents drive the real Docker engine; "running" is
what Docker says, sampled every 50 ms with timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from dora.api import errors, objects
from dora.api.client import Client
from dora.apiserver.server import APIServer
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import Controllers, TaskGroup, group, workload
from tests.integration.etcd import free_port

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_scope")]
__all__ = ["group"]

TTL = 4            # the cut-off agent's lease
AGENT_MARGIN = 1   # it fences at TTL - 1 s without a refresh
FENCE_MARGIN = 3   # the controllers replace at lease expiry + 3 s


class Partition:
    """A TCP proxy to the apiserver that can be cut (all connections dropped, new ones
    refused) and healed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def heal(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is None:
            return
        self._server.close()
        writers, self._writers = list(self._writers), set()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)


class Sampler:
    """What Docker runs for each workload, sampled with timestamps."""

    def __init__(self, docker: Any, nodes: tuple[str, ...]) -> None:
        self.docker = docker
        self.nodes = nodes
        # (time, node, workload) of every running container, at every sample.
        self.samples: list[tuple[float, list[tuple[str, str]]]] = []

    def running(self) -> list[tuple[str, str]]:
        found = []
        for node in self.nodes:
            for container in h.node_containers(self.docker, node):
                if container.status == "running":
                    found.append((node, container.labels.get("dora.workload", "")))
        return found

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            running = await asyncio.to_thread(self.running)
            self.samples.append((now, running))
            await asyncio.sleep(0.05)

    def first(self, node: str, workload: str, after: float) -> float | None:
        for at, running in self.samples:
            if at >= after and (node, workload) in running:
                return at
        return None

    def last(self, node: str, workload: str) -> float | None:
        times = [at for at, running in self.samples if (node, workload) in running]
        return max(times) if times else None

    def most_at_once(self, workload: str) -> int:
        return max((sum(1 for _, w in running if w == workload)
                    for _, running in self.samples), default=0)


@pytest.fixture
def nodes(docker: Any) -> Iterator[tuple[str, str]]:
    names = (h.new_node_name(), h.new_node_name())
    with h.cleaned(docker, *names):
        yield names


@contextlib.asynccontextmanager
async def sampling(docker: Any, nodes: tuple[str, ...]) -> AsyncIterator[Sampler]:
    sampler = Sampler(docker, nodes)
    task = asyncio.create_task(sampler.run())
    try:
        yield sampler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def running_on(client: Client, workload: str, node: str) -> bool:
    items, _ = await client.list("Container", zone=h.ZONE, workspace=h.WORKSPACE,
                                 label_selector=f"dora.io/workload={workload}")
    return any(c.container.spec.node_name == node and c.container.status.phase == "Running"
               for c in items)


def busybox(name: str, *, replacement: str = "") -> Any:
    obj = workload(name, image=h.BUSYBOX, restart="Always")
    obj.workload.spec.config.replacement = replacement
    return obj


async def test_a_cut_off_agent_stops_its_containers_before_any_replacement_starts(
    client: Client, apiserver: APIServer, admin_token: str, docker: Any, group: TaskGroup,
    nodes: tuple[str, str],
) -> None:
    partition = Partition(apiserver.port)
    await partition.heal()
    try:
        await cut_off_agent(client, admin_token, docker, group, nodes, partition)
    finally:
        await partition.cut()


async def cut_off_agent(client: Client, admin_token: str, docker: Any, group: TaskGroup,
                        nodes: tuple[str, str], partition: Partition) -> None:
    a, b = nodes
    for node in nodes:
        await h.declare_node(client, node)
    Controllers(client, fence_margin=FENCE_MARGIN).start(group)
    async with (Client(f"127.0.0.1:{partition.port}", token=admin_token, timeout=5) as via,
                h.running_agent(via, a, lease_ttl=TTL, fence_margin=AGENT_MARGIN),
                sampling(docker, nodes) as sampler):
        await client.apply(busybox("careful"))
        await client.apply(busybox("eager", replacement="Eager"))
        for name in ("careful", "eager"):
            await h.eventually(lambda n=name: running_on(client, n, a),  # type: ignore[misc]
                               what=f"{name} running on {a}", within=30)
        async with h.running_agent(client, b, lease_ttl=TTL):
            cut = time.monotonic()
            await partition.cut()
            await h.eventually(lambda: running_on(client, "careful", b),
                               what="careful replaced on the other node", within=40)
            await h.eventually(lambda: running_on(client, "eager", b),
                               what="eager replaced on the other node", within=5)
            await asyncio.sleep(1)
            stopped = sampler.last(a, "careful")
            assert stopped is not None
            # The cut-off agent stopped its containers before its lease ran out...
            assert stopped - cut < TTL, f"stopped {stopped - cut:.1f}s after the cut"
            # ...and the careful one's replacement started after that, and only once
            # the TTL and the controllers' margin had passed.
            replaced = sampler.first(b, "careful", after=cut)
            assert replaced is not None and replaced > stopped
            assert replaced - cut >= TTL + FENCE_MARGIN - 1, f"{replaced - cut:.1f}s"
            assert sampler.most_at_once("careful") == 1
            # The eager one was replaced as soon as the lease expired, before the margin.
            eager = sampler.first(b, "eager", after=cut)
            assert eager is not None and eager < replaced
            # Healed: the agent comes back, nothing it ran comes back with it.
            healed = time.monotonic()
            await partition.heal()
            async def lease_back() -> bool:
                try:
                    await client.get("Lease", f"node.{a}", zone=h.ZONE)
                except errors.NotFound:
                    return False
                return True
            await h.eventually(lease_back, what="the agent's lease back", within=20)
            await asyncio.sleep(3)
            assert sampler.first(a, "careful", after=healed) is None
            assert sampler.first(a, "eager", after=healed) is None
            assert sampler.most_at_once("careful") == 1
            assert [w for _, w in sampler.running()].count("careful") == 1


async def test_a_fenced_node_loses_its_containers_at_once_and_its_agent_runs_nothing(
    client: Client, admin_token: str, docker: Any, group: TaskGroup,
    nodes: tuple[str, str],
) -> None:
    a, b = nodes
    for node in nodes:
        await h.declare_node(client, node)
    Controllers(client, fence_margin=60).start(group)
    async with sampling(docker, nodes) as sampler:
        async with h.running_agent(client, a, lease_ttl=30):
            await client.apply(busybox("job"))
            await h.eventually(lambda: running_on(client, "job", a), what="job running on a",
                               within=30)
        # The agent is gone (its container runs on, its lease for up to 30 s more): an
        # administrator declares the machine dead.
        node = await client.get("Node", a, zone=h.ZONE)
        node.node.spec.fenced = True
        node.node.ClearField("status")
        await client.apply(node)
        async with h.running_agent(client, b, lease_ttl=30):
            fenced = time.monotonic()
            await h.eventually(lambda: running_on(client, "job", b),
                               what="job replaced on b", within=20)
            assert time.monotonic() - fenced < 20  # not the lease's 30 s + 60 s margin
            status = (await client.get("Node", a, zone=h.ZONE)).node.status
            assert status.phase == "NotReady"
            # The old copy still runs: Dora cannot reach a dead machine; the
            # administrator said it is dead. Its agent, back, stops it at once.
            assert (a, "job") in sampler.running()
            async with h.running_agent(client, a, lease_ttl=30, wait_ready=False):
                async def stopped() -> bool:
                    return (a, "job") not in await asyncio.to_thread(sampler.running)
                await h.eventually(stopped, what="the fenced agent stopping job", within=15)
                await client.apply(busybox("more"))
                await h.eventually(lambda: running_on(client, "more", b),
                                   what="new work placed on b only", within=20)
                assert (a, "more") not in sampler.running()
        node = await client.get("Node", a, zone=h.ZONE)
        assert node.node.spec.fenced


async def test_an_unknown_replacement_is_refused(client: Client) -> None:
    obj = busybox("odd", replacement="Sometimes")
    with pytest.raises(Exception, match=r"spec.config.replacement"):
        await client.apply(obj)
    obj.workload.spec.config.replacement = "eager"
    stored, _ = await client.apply(obj)
    assert stored.workload.spec.config.replacement == "Eager"
    assert objects.ref_of(stored).name == "odd"
