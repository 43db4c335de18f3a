"""The agent runs on the real Docker engine exactly the Containers bound to its node.

Real etcd, the real apiserver in-process, the real dockerd, the local busybox image.
The test plays the scheduler by applying Containers already bound to the node.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from dora.agent import dockerspec
from dora.agent.lease import aclose
from dora.api import conventions
from dora.api.client import Client, WatchEvent
from tests.integration import agent_harness as h

pytestmark = pytest.mark.usefixtures("default_scope")


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


@pytest.fixture
def other_node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        port: int = probe.getsockname()[1]
        return port


def docker_ps(node: str) -> list[dict[str, str]]:
    """What ``docker ps`` shows for the node, as a person would ask for it."""
    out = subprocess.run(
        ["docker", "ps", "--no-trunc", "--filter", f"label=dora.node={node}",
         "--format", "{{json .}}"],
        check=True, capture_output=True, text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_a_bound_container_runs_with_doras_labels_and_goes_when_deleted(
    client: Client, docker: Any, node: str
) -> None:
    async with h.running_agent(client, node):
        await client.apply(h.bound("web.0", node))
        running = await h.phase_of(client, "web.0", "Running")
        status = running.container.status
        assert status.node_name == node
        assert status.HasField("started_at")
        [row] = docker_ps(node)
        assert row["ID"] == status.docker_id
        labels = dict(item.split("=", 1) for item in row["Labels"].split(","))
        assert labels["dora.uid"] == running.metadata.uid
        assert labels["dora.container"] == "web.0"
        assert labels["dora.workspace"] == h.WORKSPACE
        assert labels["dora.zone"] == h.ZONE
        assert labels["dora.workload"] == "web"
        assert labels["dora.version"] == "1"
        assert row["Names"].startswith(f"dora-{h.ZONE}-{h.WORKSPACE}-web.0-")

        host_config = docker.containers.get(status.docker_id).attrs["HostConfig"]
        assert host_config["NanoCpus"] == 500_000_000
        assert host_config["NetworkMode"] == "none"
        assert host_config["Init"] is True
        assert not host_config.get("DeviceRequests")

        deleting = await client.delete("Container", "web.0", zone=h.ZONE,
                                       workspace=h.WORKSPACE)
        assert deleting.metadata.HasField("deletion_timestamp"), "held by the finalizer"
        await h.gone(client, "web.0")
        assert h.node_containers(docker, node) == []


async def test_run_options_reach_docker(client: Client, docker: Any, node: str) -> None:
    obj = h.bound("net.0", node, cmd="sleep 600")
    template = obj.container.spec.template
    template.config.shm_size = 128 * 1024 * 1024
    template.network.mode = "bridge"
    template.network.ports.add(node_port=free_port(), port=8008)
    async with h.running_agent(client, node):
        await client.apply(obj)
        running = await h.phase_of(client, "net.0", "Running")
    attrs = docker.containers.get(running.container.status.docker_id).attrs
    host_config = attrs["HostConfig"]
    assert host_config["ShmSize"] == 128 * 1024 * 1024
    assert host_config["NetworkMode"] == "bridge"
    node_port = template.network.ports[0].node_port
    assert host_config["PortBindings"] == {"8008/tcp": [{"HostIp": "", "HostPort":
                                                         str(node_port)}]}
    assert attrs["Config"]["Cmd"] == ["sleep", "600"]


async def test_an_exited_container_reports_its_exit_code_and_is_not_restarted(
    client: Client, docker: Any, node: str
) -> None:
    async with h.running_agent(client, node) as agent:
        await client.apply(h.bound("job.0", node, cmd="sh -c 'echo done; exit 3'"))
        exited = await h.phase_of(client, "job.0", "Exited")
        status = exited.container.status
        assert (status.exit_code, status.reason) == (3, "Error")
        assert status.HasField("finished_at") and status.HasField("started_at")
        await h.polled(agent)
        [container] = h.node_containers(docker, node)
        assert container.id == status.docker_id
        assert container.status == "exited"
        again = await h.get_container(client, "job.0")
        assert again is not None and again.container.status.phase == "Exited"


async def test_pull_policy_never_with_a_missing_image_fails_with_a_clear_reason(
    client: Client, docker: Any, node: str
) -> None:
    async with h.running_agent(client, node):
        await client.apply(h.bound("lost.0", node, image="dora/absent:never",
                                   pull_policy="Never"))
        failed = await h.phase_of(client, "lost.0", "Failed")
        assert failed.container.status.reason == (
            "image dora/absent:never not present and pullPolicy is Never"
        )
        assert h.node_containers(docker, node) == []
        await client.delete("Container", "lost.0", zone=h.ZONE, workspace=h.WORKSPACE)
        await h.gone(client, "lost.0")


async def test_a_container_docker_cannot_start_fails_and_is_not_retried(
    client: Client, docker: Any, node: str
) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        obj = h.bound("clash.0", node)
        obj.container.spec.template.network.mode = "bridge"
        obj.container.spec.template.network.ports.add(node_port=taken.getsockname()[1],
                                                      port=8008)
        async with h.running_agent(client, node) as agent:
            await client.apply(obj)
            failed = await h.phase_of(client, "clash.0", "Failed")
            status = failed.container.status
            assert status.reason.startswith("Docker could not start the container: ")
            [container] = h.node_containers(docker, node)
            assert container.id == status.docker_id
            await h.polled(agent)
            assert [c.id for c in h.node_containers(docker, node)] == [container.id]
            again = await h.get_container(client, "clash.0")
            assert again is not None and again.container.status.phase == "Failed"


async def test_image_drift_replaces_the_old_container_with_the_new_version(
    client: Client, docker: Any, node: str
) -> None:
    """The workload controller replaces a changed container by deleting it and creating
    one of the new version (here under the same name, as ``conventions`` names them)."""
    async with h.running_agent(client, node):
        await client.apply(h.bound("web.0", node, cmd="sleep 600", version=1))
        old = await h.phase_of(client, "web.0", "Running")
        await client.delete("Container", "web.0", zone=h.ZONE, workspace=h.WORKSPACE)
        await h.gone(client, "web.0")
        await client.apply(h.bound("web.0", node, cmd="sleep 700", version=2))
        new = await h.phase_of(client, "web.0", "Running")
        assert new.metadata.uid != old.metadata.uid
        assert new.container.status.docker_id != old.container.status.docker_id
        [container] = h.node_containers(docker, node)
        assert container.id == new.container.status.docker_id
        assert container.labels["dora.version"] == "2"
        assert container.attrs["Config"]["Cmd"] == ["sleep", "700"]


async def test_an_agent_killed_and_started_again_adopts_its_containers(
    client: Client, docker: Any, node: str
) -> None:
    names = ["web.0", "web.1", "web.2"]
    async with h.running_agent(client, node):
        for name in names:
            await client.apply(h.bound(name, node))
        before = {name: (await h.phase_of(client, name, "Running")).container.status
                  for name in names}
    # The agent is dead (cancelled mid-flight, lease not revoked); its containers run on.
    started = {c.id: c.attrs["State"]["StartedAt"] for c in h.node_containers(docker, node)}
    assert sorted(started) == sorted(s.docker_id for s in before.values())
    lease_name = conventions.node_lease_name(node)
    lease = await client.get("Lease", lease_name, zone=h.ZONE)
    leases = client.watch("Lease", zone=h.ZONE, resource_version=lease.metadata.resource_version)

    async with h.running_agent(client, node) as agent:
        # Taken over at once, never deleted: node-lifecycle would evict on a deletion.
        async with asyncio.timeout(5):
            event = await anext(aiter(leases))
        assert (event.type, event.object.metadata.name) == (WatchEvent.MODIFIED, lease_name)
        assert event.object.lease.spec.lease_id == agent.lease.lease_id
        await aclose(leases)
        for name in names:
            await h.phase_of(client, name, "Running")
        await h.polled(agent)
        after = h.node_containers(docker, node)
        assert {c.id: c.attrs["State"]["StartedAt"] for c in after} == started, (
            "the same Docker containers, never restarted"
        )
        for name in names:
            obj = await h.get_container(client, name)
            assert obj is not None
            assert obj.container.status.docker_id == before[name].docker_id


async def test_docker_containers_of_no_container_are_removed_and_other_nodes_untouched(
    client: Client, docker: Any, node: str, other_node: str
) -> None:
    def run(labels: dict[str, str]) -> str:
        container = docker.containers.run(h.BUSYBOX, ["sleep", "600"], detach=True,
                                          labels=labels, network_mode="none", init=True)
        return str(container.id)

    orphan = run({dockerspec.LABEL_NODE: node, dockerspec.LABEL_UID: "no-such-uid",
                  dockerspec.LABEL_ZONE: h.ZONE, dockerspec.LABEL_WORKSPACE: h.WORKSPACE,
                  dockerspec.LABEL_CONTAINER: "ghost.0"})
    unnamed = run({dockerspec.LABEL_NODE: node})
    others = run({dockerspec.LABEL_NODE: other_node, dockerspec.LABEL_UID: "x",
                  dockerspec.LABEL_ZONE: h.ZONE, dockerspec.LABEL_WORKSPACE: h.WORKSPACE,
                  dockerspec.LABEL_CONTAINER: "web.0"})
    # The other node's Container object exists and is bound there: still not ours.
    await client.apply(h.bound("theirs.0", other_node))

    async with h.running_agent(client, node):
        await client.apply(h.bound("mine.0", node))
        mine = await h.phase_of(client, "mine.0", "Running")

        async def only_mine_left() -> bool:
            ids = {c.id for c in h.node_containers(docker, node)}
            return ids == {mine.container.status.docker_id}

        await h.eventually(only_mine_left, what="the orphans to be removed")
    assert orphan not in {c.id for c in h.node_containers(docker, node)}
    assert unnamed not in {c.id for c in h.node_containers(docker, node)}
    [untouched] = h.node_containers(docker, other_node)
    assert untouched.id == others and untouched.status == "running"
    theirs = await h.get_container(client, "theirs.0")
    assert theirs is not None and theirs.container.status.phase == "", "not reported by us"


async def test_a_container_moved_to_another_node_is_removed_here_finalizer_kept(
    client: Client, docker: Any, node: str, other_node: str
) -> None:
    async with h.running_agent(client, node):
        await client.apply(h.bound("move.0", node))
        await h.phase_of(client, "move.0", "Running")
        moved = await h.get_container(client, "move.0")
        assert moved is not None
        moved.metadata.labels[conventions.NODE_LABEL] = other_node
        moved.container.spec.node_name = other_node
        await client.apply(moved)

        async def removed() -> bool:
            return h.node_containers(docker, node) == []

        await h.eventually(removed, what="the Docker container to go")
    still = await h.get_container(client, "move.0")
    assert still is not None
    assert conventions.AGENT_FINALIZER in still.metadata.finalizers


async def test_a_container_created_but_never_started_is_started_not_duplicated(
    client: Client, docker: Any, node: str
) -> None:
    """The agent died between ``docker create`` and ``docker start``."""
    applied, _ = await client.apply(h.bound("half.0", node))
    spec = dockerspec.run_spec(applied, node=node, simulated_gpus=False)
    created = docker.containers.create(spec.image, spec.command, name=spec.name,
                                       labels=spec.labels, network_mode="none", init=True)
    applied.container.status.phase = "Creating"
    await client.update_status(applied)
    async with h.running_agent(client, node):
        running = await h.phase_of(client, "half.0", "Running")
    assert running.container.status.docker_id == created.id
    assert [c.id for c in h.node_containers(docker, node)] == [created.id]


async def test_a_docker_container_removed_behind_doras_back_is_failed_not_rerun(
    client: Client, docker: Any, node: str
) -> None:
    async with h.running_agent(client, node) as agent:
        await client.apply(h.bound("gone.0", node))
        running = await h.phase_of(client, "gone.0", "Running")
        docker.containers.get(running.container.status.docker_id).remove(force=True)
        failed = await h.phase_of(client, "gone.0", "Failed")
        assert "is gone" in failed.container.status.reason
        await h.polled(agent)
        assert h.node_containers(docker, node) == []
