"""No container runs without a memory limit: what Docker itself holds
(``HostConfig.Memory``) for a container that names none (a share of the node's
memory) and for one that names its own (``selectors.cpu.memory``, which wins).

Real etcd, the real apiserver in-process, an agent on the real dockerd.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dora.agent import dockerspec
from dora.agent.inventory import read_memory
from dora.api.client import Client
from tests.integration import agent_harness as h

pytestmark = pytest.mark.usefixtures("default_scope")

MiB = 1024 * 1024


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


async def test_docker_gets_a_share_of_the_node_unless_the_workload_names_its_memory(
    client: Client, docker: Any, node: str
) -> None:
    plain = h.bound("plain", node)
    sized = h.bound("sized", node)
    sized.container.spec.template.selectors.cpu.memory = 96 * MiB
    gpu_sized = h.bound("gpu-sized", node)
    gpu_sized.container.spec.template.selectors.gpu.memory = 80 * MiB
    async with h.running_agent(client, node):
        for obj in (plain, sized, gpu_sized):
            await client.apply(obj)
        limits = {}
        for obj in (plain, sized, gpu_sized):
            running = await h.phase_of(client, obj.metadata.name, "Running")
            host_config = docker.api.inspect_container(
                running.container.status.docker_id)["HostConfig"]
            limits[obj.metadata.name] = host_config["Memory"]
    share = int(read_memory() * dockerspec.DEFAULT_MEMORY_FRACTION)
    assert limits == {"plain": share, "sized": 96 * MiB, "gpu-sized": 80 * MiB}
    assert 0 < share < read_memory()
