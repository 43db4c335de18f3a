"""Nothing runs twice by Dora's doing: agents fence themselves when cut off, the
controllers replace only after the lease TTL plus a margin (or at once when a
workload says ``Eager``, or an administrator fences the node), and a fenced node's
agent runs nothing when it comes back.

The partition is a real network cut: the cut-off agent is a ``dora-agent`` process
in its own network namespace, reaching an apiserver over a veth pair whose host end
the test takes down (packets vanish, as when a cable is pulled) and brings up again.
Both agents drive the real Docker engine; "running" is what Docker says, sampled
every 50 ms with timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dora.api import errors, objects
from dora.api.client import Client
from dora.apiserver.server import APIServer, Config
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import Controllers, TaskGroup, group, workload
from tests.integration.etcd import free_port

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

TTL = 4            # the cut-off agent's lease
AGENT_MARGIN = 1   # it fences at TTL - 1 s without a refresh
FENCE_MARGIN = 3   # the controllers replace at lease expiry + 3 s


class Partition:
    """The cut-off agent's own network namespace, linked to the host by a veth pair
    (the host end HOST, the namespace's end AGENT, a /30 of their own). ``cut`` takes
    the host end down: packets vanish, nothing is refused or reset, as when a cable is
    pulled; ``heal`` brings it back. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); the
    test is skipped, saying why, where the kernel refuses."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.netns = f"dora-{tag}"
        self.host_if, self.agent_if = f"vd{tag}h", f"vd{tag}a"
        net = random.randrange(64)
        sub = random.randrange(64) * 4
        self.host = f"10.{213}.{net}.{sub + 1}"
        self.agent = f"10.{213}.{net}.{sub + 2}"

    @staticmethod
    def ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if done.returncode:
            raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def create(self) -> None:
        if shutil.which("ip") is None:
            pytest.skip("the network partition needs iproute2's `ip` (apt-get install iproute2)")
        try:
            self.ip("netns", "add", self.netns)
        except OSError as exc:
            pytest.skip(f"the kernel refuses a network namespace here (run as root with "
                        f"CAP_NET_ADMIN and CAP_SYS_ADMIN): {exc}")
        self.ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.agent_if)
        self.ip("link", "set", self.agent_if, "netns", self.netns)
        self.ip("addr", "add", f"{self.host}/30", "dev", self.host_if)
        self.ip("link", "set", self.host_if, "up")
        self.ip("-n", self.netns, "addr", "add", f"{self.agent}/30", "dev", self.agent_if)
        self.ip("-n", self.netns, "link", "set", self.agent_if, "up")
        self.ip("-n", self.netns, "link", "set", "lo", "up")

    def cut(self) -> None:
        self.ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        self.ip("link", "set", self.host_if, "up")

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.ip("link", "del", self.host_if)
        with contextlib.suppress(OSError):
            self.ip("netns", "del", self.netns)


@contextlib.contextmanager
def partition() -> Iterator[Partition]:
    made = Partition()
    try:
        made.create()
        yield made
    finally:
        made.remove()


@contextlib.contextmanager
def agent_process(partition: Partition, server: str, token: str, node: str,
                  tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``dora-agent`` in the partition's namespace; it reaches the apiserver only
    over the veth pair (and Docker through its socket, which no network cut touches)."""
    token_file = tmp / f"{node}.token"
    token_file.write_text(token)
    log = (tmp / f"{node}.log").open("wb")
    process = subprocess.Popen(
        ["ip", "netns", "exec", partition.netns, sys.executable, "-m", "dora.agent.main",
         "--server", server, "--token-file", str(token_file), "--node-name", node,
         "--zone", h.ZONE, "--listen", f"127.0.0.1:{free_port()}", "--lease-ttl", str(TTL),
         "--fence-margin", str(AGENT_MARGIN), "--stop-timeout", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        log.close()


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


async def lease_of(client: Client, node: str) -> bool:
    try:
        await client.get("Lease", f"node.{node}", zone=h.ZONE)
    except errors.NotFound:
        return False
    return True


async def test_a_cut_off_agent_stops_its_containers_before_any_replacement_starts(
    client: Client, apiserver_config: Config, admin_token: str, docker: Any,
    group: TaskGroup, nodes: tuple[str, str], tmp_path: Path,
) -> None:
    with partition() as link:
        # An apiserver the namespace can reach: on the host end of the veth pair.
        far = APIServer(dataclasses.replace(apiserver_config, listen=f"{link.host}:0"))
        await far.start()
        try:
            await cut_off_agent(client, admin_token, docker, group, nodes, link,
                                f"{link.host}:{far.port}", tmp_path)
        finally:
            await far.stop(grace=0)


async def cut_off_agent(client: Client, admin_token: str, docker: Any, group: TaskGroup,
                        nodes: tuple[str, str], link: Partition, server: str,
                        tmp: Path) -> None:
    a = nodes[0]
    for node in nodes:
        await h.declare_node(client, node)
    Controllers(client, fence_margin=FENCE_MARGIN).start(group)
    with agent_process(link, server, admin_token, a, tmp) as process:
        await cut_off_agent_process(client, docker, nodes, link, process, tmp)


async def cut_off_agent_process(client: Client, docker: Any, nodes: tuple[str, str],
                                link: Partition, process: subprocess.Popen[bytes],
                                tmp: Path) -> None:
    a, b = nodes
    async with sampling(docker, nodes) as sampler:
        await h.eventually(lambda: lease_of(client, a), what=f"the agent of {a} in its "
                           f"namespace holding its lease", within=30)
        assert process.poll() is None, (tmp / f"{a}.log").read_text()
        await client.apply(busybox("careful"))
        await client.apply(busybox("eager", replacement="Eager"))
        for name in ("careful", "eager"):
            await h.eventually(lambda n=name: running_on(client, n, a),  # type: ignore[misc]
                               what=f"{name} running on {a}", within=30)
        async with h.running_agent(client, b, lease_ttl=TTL):
            cut = time.monotonic()
            link.cut()
            await h.eventually(lambda: running_on(client, "careful", b),
                               what="careful replaced on the other node", within=40)
            await h.eventually(lambda: running_on(client, "eager", b),
                               what="eager replaced on the other node", within=5)
            await asyncio.sleep(1)  # a second more of samples: nothing comes back on a
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
            link.heal()
            await h.eventually(lambda: lease_of(client, a), what="the agent's lease back",
                               within=30)
            assert process.poll() is None, (tmp / f"{a}.log").read_text()
            await asyncio.sleep(3)  # measured: three seconds back, and nothing restarts
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
