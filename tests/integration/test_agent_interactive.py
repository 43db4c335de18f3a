"""The container basics of issue 14 on the real Docker engine: ``cmd`` as shell words,
interactive images that stay up (a TTY, an open stdin), the environment a container
is given, and pause/resume.

Real etcd, the real apiserver in-process, a real agent on the real dockerd and its
stream server (``test_streams``' fixtures); the workload tests add the real
controllers, so replica slots, labels and pausing go the whole way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from dora.api import errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver.server import Config
from tests.integration import agent_harness as h
from tests.integration import test_streams as streams
from tests.integration.controllers_harness import Background, Controllers
from tests.integration.test_streams import Cluster, read_until, running

pytestmark = pytest.mark.usefixtures("default_scope")


@pytest.fixture
def apiserver_config(apiserver_config: Config) -> Config:
    return dataclasses.replace(apiserver_config, agent_secret=streams.SECRET)


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


@pytest.fixture
async def cluster(client: Client, node: str) -> AsyncIterator[Cluster]:
    """The agent and its stream server, as in ``test_streams``."""
    async with streams.agent_server(node) as server:
        await streams.declare(client, node, f"http://127.0.0.1:{server.port}")
        async with h.running_agent(client, node):
            yield Cluster(client, node, server)


async def exec_out(client: Client, name: str, *argv: str) -> str:
    async with client.exec(name, list(argv)) as session:
        out, err, code = await session.wait()
    assert code == 0, (out, err)
    return out.decode()


async def env_of(client: Client, name: str) -> dict[str, str]:
    text = await exec_out(client, name, "env")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def docker_state(docker: Any, obj: object_pb2.Object) -> str:
    return str(docker.api.inspect_container(obj.container.status.docker_id)["State"]["Status"])


# -- cmd ----------------------------------------------------------------------------------


async def test_dollar_i_in_sh_c_reaches_the_inner_shell(cluster: Cluster) -> None:
    await running(cluster.client, "ticker", cluster.node,
                  'sh -c "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done"')
    logs = cluster.client.logs("ticker", follow=True)
    seen = await read_until(logs, rb"tick-1\r?\n")
    await logs.aclose()  # type: ignore[attr-defined]
    assert re.findall(rb"tick-(\d+)", seen)[:2] == [b"0", b"1"]


# -- interactive images ---------------------------------------------------------------------


async def test_a_bare_shell_stays_running_and_takes_exec_and_logs(cluster: Cluster,
                                                                  docker: Any) -> None:
    await running(cluster.client, "shell", cluster.node, "/bin/sh")
    await asyncio.sleep(2)  # without a TTY and stdin it would have Completed by now
    obj = await h.get_container(cluster.client, "shell")
    assert obj is not None and obj.container.status.phase == "Running"
    config = docker.api.inspect_container(obj.container.status.docker_id)["Config"]
    assert (config["Tty"], config["OpenStdin"], config["Cmd"]) == (True, True, ["/bin/sh"])
    assert await exec_out(cluster.client, "shell", "echo", "inside") == "inside\n"
    async with cluster.client.exec("shell", ["sh"], tty=True, stdin=True) as session:
        output = (data async for _, data in session.output())
        await session.send(b"echo $((6*7))\n")
        await read_until(output, rb"42\r\n")
        await session.send(b"exit 0\n")
    logs = b"".join([c async for c in cluster.client.logs("shell")])
    # What the interactive shell wrote to its terminal: its banner, then a prompt.
    assert b"BusyBox" in logs and b"\r\n" in logs


# -- environment ----------------------------------------------------------------------------


async def test_config_env_and_doras_variables_are_seen_inside(cluster: Cluster) -> None:
    obj = h.bound("web.3", cluster.node)
    env = obj.container.spec.template.config.env
    env.add(name="secret", value="SUPER_SECRET")
    env.add(name="SPACES", value="a b  'c' $HOME")
    obj.container.spec.replica_index, obj.container.spec.replicas = 3, 4
    await cluster.client.apply(obj)
    await h.phase_of(cluster.client, "web.3", "Running")
    seen = await env_of(cluster.client, "web.3")
    assert seen["secret"] == "SUPER_SECRET"
    assert seen["SPACES"] == "a b  'c' $HOME"
    assert {k: v for k, v in seen.items() if k.startswith("DORA_")} == {
        "DORA_WORKLOAD": "web", "DORA_CONTAINER": "web.3", "DORA_REPLICA_INDEX": "3",
        "DORA_REPLICAS": "4", "DORA_NODE": cluster.node, "DORA_ZONE": h.ZONE,
        "DORA_WORKSPACE": h.WORKSPACE,
    }
    assert (seen["NVIDIA_VISIBLE_DEVICES"], seen["CUDA_VISIBLE_DEVICES"]) == ("void", "")


async def test_bad_env_is_refused_and_nothing_is_written(client: Client) -> None:
    obj = h.bound("bad.0", "nowhere")
    obj.container.spec.template.config.env.add(name="A=B", value="x")
    obj.container.spec.template.config.env.add(name="BIG", value="x" * (64 * 1024))
    with pytest.raises(errors.Invalid) as caught:
        await client.apply(obj)
    assert [v.field for v in caught.value.violations] == [
        "spec.template.config.env[0].name", "spec.template.config.env[1].value"]
    assert await h.get_container(client, "bad.0") is None


# -- pause ----------------------------------------------------------------------------------


async def test_a_paused_container_is_frozen_and_thaws(cluster: Cluster, docker: Any) -> None:
    await running(cluster.client, "counter", cluster.node,
                  "sh -c 'i=0; while true; do echo $i > /tmp/n; i=$((i+1)); sleep 0.1; done'")
    stored, changed = await cluster.client.set_paused("Container", "counter", paused=True)
    assert stored.container.spec.paused and changed == ["default/counter"]
    paused = await h.phase_of(cluster.client, "counter", "Paused")
    assert docker_state(docker, paused) == "paused"
    await cluster.client.set_paused("Container", "counter", paused=False)
    running_again = await h.phase_of(cluster.client, "counter", "Running")
    assert docker_state(docker, running_again) == "running"
    first = int(await exec_out(cluster.client, "counter", "cat", "/tmp/n"))
    await asyncio.sleep(0.5)
    assert int(await exec_out(cluster.client, "counter", "cat", "/tmp/n")) > first


# -- workloads: controllers, agent and Docker together -------------------------------------


@pytest.fixture
async def controllers(client: Client, cluster: Cluster) -> AsyncIterator[Controllers]:
    background = Background()
    replica = Controllers(client)
    replica.start(background)
    try:
        yield replica
    finally:
        replica.stop()
        await background.close()


def busybox_workload(name: str, *, replicas: int) -> object_pb2.Object:
    obj = objects.new("Workload", name, zone=h.ZONE, workspace=h.WORKSPACE)
    obj.metadata.labels["app"] = "x"
    spec = obj.workload.spec
    spec.replica.count = replicas
    spec.image.image, spec.image.pull_policy = h.BUSYBOX, "Never"
    spec.selectors.cpu.millicores = 100  # three fit on a two-core machine
    spec.config.cmd = "/bin/sh"
    spec.config.env.add(name="GREETING", value="hello world")
    return obj


async def containers_in(client: Client, phase: str, count: int, **scope: str
                        ) -> list[object_pb2.Object]:
    async def probe() -> list[object_pb2.Object] | None:
        items, _ = await client.list("Container", label_selector="app=x", **scope)
        found = [c for c in items if c.container.status.phase == phase]
        return found if len(found) == count == len(items) else None

    return await h.eventually(probe, what=f"{count} containers labelled app=x {phase}",
                              within=40)


async def test_workload_replicas_know_their_slot_and_pause_together(
        cluster: Cluster, controllers: Controllers, docker: Any) -> None:
    client = cluster.client
    await client.apply(busybox_workload("shells", replicas=2))
    found = await containers_in(client, "Running", 2)
    assert sorted(c.metadata.name for c in found) == ["shells.0", "shells.1"]
    for container in found:
        seen = await env_of(client, container.metadata.name)
        index = container.metadata.name.rsplit(".", 1)[1]
        assert (seen["DORA_REPLICA_INDEX"], seen["DORA_REPLICAS"]) == (index, "2")
        assert (seen["DORA_WORKLOAD"], seen["GREETING"]) == ("shells", "hello world")
    # The replacement of a deleted container takes its slot (not necessarily its name:
    # it starts while the old one is still being removed).
    await client.delete("Container", "shells.1", zone=h.ZONE, workspace=h.WORKSPACE)
    await h.gone(client, "shells.1")
    found = await containers_in(client, "Running", 2)
    replacement = next(c for c in found if c.metadata.name != "shells.0")
    assert replacement.container.spec.replica_index == 1
    assert (await env_of(client, replacement.metadata.name))["DORA_REPLICA_INDEX"] == "1"

    _, changed = await client.set_paused("Workload", "shells", paused=True)
    assert sorted(changed) == sorted(f"default/{c.metadata.name}" for c in found)
    for container in await containers_in(client, "Paused", 2):
        assert docker_state(docker, container) == "paused"
    # Applying the workload again keeps it paused and makes no new version.
    await client.apply(busybox_workload("shells", replicas=2))
    workload = await client.get("Workload", "shells", zone=h.ZONE, workspace=h.WORKSPACE)
    assert workload.workload.spec.paused
    await asyncio.sleep(1)
    items, _ = await client.list("Workloadversion", zone=h.ZONE, workspace=h.WORKSPACE)
    assert [v.metadata.name for v in items] == ["shells.v1"]
    await containers_in(client, "Paused", 2)
    # One made while the workload is paused starts frozen.
    await client.apply(busybox_workload("shells", replicas=3))
    third = await containers_in(client, "Paused", 3)
    assert all(c.container.spec.paused for c in third)

    await client.set_paused("Workload", "shells", paused=False)
    await containers_in(client, "Running", 3)


async def test_pausing_a_stopped_workload_is_refused_and_writes_nothing(client: Client) -> None:
    obj = busybox_workload("idle", replicas=1)
    obj.workload.spec.stopped = True
    stored, _ = await client.apply(obj)
    with pytest.raises(errors.Invalid, match="workload idle is stopped: nothing runs to pause"):
        await client.set_paused("Workload", "idle", paused=True)
    after = await client.get("Workload", "idle", zone=h.ZONE, workspace=h.WORKSPACE)
    assert after.metadata.resource_version == stored.metadata.resource_version
    with pytest.raises(errors.Invalid, match="only a Workload or a Container"):
        await client.set_paused("Volume", "idle", paused=True)


async def test_the_gpus_given_are_seen_by_uuid_inside(client: Client, node: str) -> None:
    from dora.agent.inventory import SimulatedNVML

    nvml = SimulatedNVML(["A100-SXM4-40GB"] * 4, node=node)
    uuids = [nvml.nvmlDeviceGetUUID(i) for i in range(4)]
    async with streams.agent_server(node) as server:
        await streams.declare(client, node, f"http://127.0.0.1:{server.port}")
        async with h.running_agent(client, node, nvml=nvml, simulated=True):
            obj = h.bound("train.0", node)
            for index in (1, 3):
                obj.container.spec.gpus.add(index=index, uuid=uuids[index],
                                            product_name="A100-SXM4-40GB")
            await client.apply(obj)
            await h.phase_of(client, "train.0", "Running")
            seen = await env_of(client, "train.0")
    wanted = f"{uuids[1]},{uuids[3]}"
    assert (seen["NVIDIA_VISIBLE_DEVICES"], seen["CUDA_VISIBLE_DEVICES"]) == (wanted, wanted)
