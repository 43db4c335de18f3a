"""doractl top nodes|containers against the real apiserver: reservations from the bound
Containers, their use from ``status.usage``, GPU utilisation and memory in use from
the Node's status (what the agents report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dora.api import objects
from dora.api.client import Client
from dora.apiserver.server import APIServer
from tests.integration.test_ctl_get import make_container, workload_yaml
from tests.integration.test_ctl_support import Ctl

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_scope")]

GIB = 1024**3


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")


async def test_top_nodes_and_containers(ctl: Ctl, client: Client) -> None:
    node = objects.new("Node", "gpu1", zone="default")
    await client.apply(node)
    node = await client.get("Node", "gpu1", zone="default")
    status = node.node.status
    status.phase = "Ready"
    status.cpu.count = 8
    status.memory_bytes = 64 * GIB
    status.gpus.add(index=0, uuid="GPU-a", product_name="A100", memory_total_bytes=40 * GIB,
                    memory_used_bytes=10 * GIB, container="web-1", utilization_percent=90)
    status.gpus.add(index=1, uuid="GPU-b", product_name="A100", memory_total_bytes=40 * GIB,
                    utilization_percent=0)
    await client.update_status(node)

    await ctl.ok("apply", "-f", "-", input=workload_yaml("web"))
    web = await client.get("Workload", "web", zone="default", workspace="default")
    for name in ("web-1", "web-2"):
        await make_container(client, web, name)
    running = await client.get("Container", "web-1", zone="default", workspace="default")
    running.container.spec.node_name = "gpu1"
    running.container.spec.cpu_millicores = 1500
    running.container.spec.template.selectors.cpu.memory = 2 * GIB
    running.container.spec.gpus.add(index=0, uuid="GPU-a", product_name="A100")
    await client.apply(running)
    running = await client.get("Container", "web-1", zone="default", workspace="default")
    running.container.status.phase = "Running"
    await client.update_status(running)

    nodes = (await ctl.ok("top", "nodes")).lines
    assert nodes[0].split() == ["NAME", "STATUS", "CPU(USED)", "CPU(RESERVED)", "CPU%",
                                "MEMORY(USED)", "MEMORY(LIMITS)", "GPUS(USED)", "GPU", "UTIL%",
                                "GPU", "MEMORY(USED)", "GPU", "MEMORY%", "CONTAINERS"]
    # no usage reported yet: use is "-", never a made-up 0
    assert nodes[1].split() == ["gpu1", "Ready", "-", "1500m/8", "19%", "-", "2Gi/64Gi", "1/2",
                                "45%", "10Gi/80Gi", "12%", "1"]
    containers = (await ctl.ok("top", "containers")).lines
    # web-2 is not bound: it holds nothing yet and is left out
    assert [line.split() for line in containers[1:]] == [
        ["web-1", "gpu1", "Running", "-", "1500m", "-", "2Gi", "1", "-", "10Gi/40Gi"]]

    # what an agent writes (dora.agent.usage)
    running = await client.get("Container", "web-1", zone="default", workspace="default")
    usage = running.container.status.usage
    usage.cpu_millicores, usage.memory_bytes, usage.gpu_utilization_percent = 1234, GIB, 90
    usage.sampled_at.GetCurrentTime()
    await client.update_status(running)
    nodes = (await ctl.ok("top", "nodes")).lines
    assert nodes[1].split()[2:6] == ["1234m", "1500m/8", "19%", "1Gi"]
    containers = (await ctl.ok("top", "containers")).lines
    assert [line.split() for line in containers[1:]] == [
        ["web-1", "gpu1", "Running", "1234m", "1500m", "1Gi", "2Gi", "1", "90%", "10Gi/40Gi"]]

    wrong = await ctl("top", "pods")
    assert wrong.code == 2 and "use nodes or containers" in wrong.err
