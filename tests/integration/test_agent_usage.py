"""The agent measures its containers (``dora.agent.usage``) on the real Docker engine:
a container burning CPU and one asleep, read from their real cgroups, written into
``status.usage`` and shown by ``doractl top containers``.

Real etcd, the real apiserver in-process, the real dockerd, the local busybox image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dora.agent.inventory import SimulatedNVML
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
from tests.integration import agent_harness as h
from tests.integration.test_ctl_support import Ctl

pytestmark = pytest.mark.usefixtures("default_scope")


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


async def test_a_busy_container_uses_more_cpu_than_an_idle_one(
    client: Client, docker: Any, node: str, apiserver: APIServer, admin_token: str,
    tmp_path: Path,
) -> None:
    nvml = SimulatedNVML(["A100-SXM4-80GB[util=70]", "A100-SXM4-80GB[util=30]"], node=node)
    await h.declare_node(client, node)
    busy = h.bound("busy", node, cmd="sh -c 'while :; do :; done'")
    busy.container.spec.cpu_millicores = 500  # Docker caps it at half a core
    busy.container.spec.gpus.add(index=0, uuid=nvml.nvmlDeviceGetUUID(0),
                                 product_name="A100-SXM4-80GB")
    busy.container.spec.gpus.add(index=1, uuid=nvml.nvmlDeviceGetUUID(1),
                                 product_name="A100-SXM4-80GB")
    idle = h.bound("idle", node, cmd="sleep 600")
    short = h.bound("short", node, cmd="sleep 8")
    async with h.running_agent(client, node, nvml=nvml, simulated=True) as agent:
        for obj in (busy, idle, short):
            await client.apply(obj)
        for name in ("busy", "idle"):
            await h.phase_of(client, name, "Running")

        async def measured(name: str, *, busy: bool) -> object_pb2.Object | None:
            obj = await h.get_container(client, name)
            if obj is None or not obj.container.status.HasField("usage"):
                return None
            if busy and obj.container.status.usage.cpu_millicores < 300:
                return None  # the first sample may straddle the start
            return obj

        hot = await h.eventually(lambda: measured("busy", busy=True),
                                 what="the busy container's usage", within=30)
        cold = await h.eventually(lambda: measured("idle", busy=False),
                                  what="the idle container's usage", within=30)
        await h.eventually(lambda: measured("short", busy=False),
                           what="the short container's usage while it runs", within=5)
        hot_usage, cold_usage = hot.container.status.usage, cold.container.status.usage
        print(f"busy: {hot_usage.cpu_millicores}m {hot_usage.memory_bytes} B; "
              f"idle: {cold_usage.cpu_millicores}m {cold_usage.memory_bytes} B")
        # half a core, as its limit allows (the machine is shared: a wide margin)
        assert 300 <= hot_usage.cpu_millicores <= 800
        assert cold_usage.cpu_millicores < 50
        assert hot_usage.memory_bytes > 0 and cold_usage.memory_bytes > 0
        assert hot_usage.memory_bytes < 64 * 1024 * 1024  # a shell, not the machine
        assert hot_usage.gpu_utilization_percent == 50  # the average of 70 and 30
        assert not cold_usage.HasField("gpu_utilization_percent")
        assert hot_usage.HasField("sampled_at")

        # Write load: an idle container's sample does not move, so ten more samples
        # (3 s here; 50 s at the default 5 s) write nothing more for it.
        samples = agent.usage.samples

        async def sampled() -> bool:
            return agent.usage.samples >= samples + 10

        await h.eventually(sampled, what="ten more samples", within=20)
        still = await h.get_container(client, "idle")
        assert still is not None
        assert still.metadata.resource_version == cold.metadata.resource_version

        ctl = Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token,
                  home=tmp_path / "home")
        rows = {line.split()[0]: line.split()
                for line in (await ctl.ok("top", "containers")).lines[1:]}
        assert rows["busy"][3].endswith("m") and int(rows["busy"][3][:-1]) >= 300
        assert rows["busy"][8] == "50%"
        assert int(rows["idle"][3][:-1]) < 50

        # a container that ended keeps no stale sample
        ended = await h.phase_of(client, "short", "Exited", within=30)
        assert not ended.container.status.HasField("usage")


async def test_a_cgroup_it_cannot_read_is_logged_once_and_no_usage_is_made_up(
    client: Client, docker: Any, node: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    await h.declare_node(client, node)
    async with h.running_agent(client, node) as agent:
        # An empty /proc: an agent in a container without the host's pid namespace.
        agent.usage.proc = tmp_path
        await client.apply(h.bound("blind", node))
        await h.phase_of(client, "blind", "Running")
        samples = agent.usage.samples

        async def sampled() -> bool:
            return agent.usage.samples >= samples + 5

        await h.eventually(sampled, what="five more samples", within=20)
        obj = await h.get_container(client, "blind")
        assert obj is not None and not obj.container.status.HasField("usage")
        warnings = [r.getMessage() for r in caplog.records
                    if "cannot measure the usage" in r.getMessage()]
        assert len(warnings) == 1 and "/cgroup" in warnings[0], warnings
