"""Volumes end to end: real etcd, the apiserver and the controllers in-process, a real
agent on the real Docker engine, a Local storage in a temporary directory.

A workload writes into its volume and the file is on the storage; a Volume in use
is not deleted until its workload is gone; an NFS storage becomes a Docker named
volume with the right options (checked with ``docker volume inspect``, no NFS
server needed: nothing mounts it).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dora.agent import dockerspec
from dora.agent.docker_driver import DockerDriver
from dora.agent.volumes import Resolver
from dora.api import objects, tasks, volumes
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.controllers.volume import MAX_USED_BY
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import Controllers, TaskGroup, eventually, group

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]


@pytest.fixture
def node(docker: Any, tmp_path: Path) -> Iterator[str]:
    name = h.new_node_name()
    with h.volumes_removed(docker, tmp_path), h.cleaned(docker, name):
        yield name


def docker_cli(*args: str, check: bool = True) -> str:
    """What a person would type: ``docker volume inspect NAME``."""
    return subprocess.run(["docker", *args], check=check, capture_output=True,
                          text=True).stdout


def storage(name: str, *, kind: str, mountpath: str, endpoint: str = "") -> object_pb2.Object:
    obj = objects.new("Storage", name, zone=h.ZONE)
    obj.storage.spec.kind, obj.storage.spec.mountpath = kind, mountpath
    obj.storage.spec.endpoint = endpoint
    return obj


def volume(name: str, storage_name: str, *, local_path: str = "") -> object_pb2.Object:
    obj = objects.new("Volume", name, zone=h.ZONE, workspace=h.WORKSPACE)
    obj.volume.spec.storage, obj.volume.spec.local_path = storage_name, local_path
    return obj


def writer(name: str, *, cmd: str) -> object_pb2.Object:
    obj = objects.new("Workload", name, zone=h.ZONE, workspace=h.WORKSPACE)
    spec = obj.workload.spec
    spec.replica.count = 1
    spec.image.image = h.BUSYBOX
    spec.config.cmd = cmd
    spec.selectors.cpu.count = 1
    spec.selectors.cpu.product_name.append("All")
    spec.volumes.add(name="home")  # target defaults to /home
    return obj


async def get_volume(client: Client, name: str) -> object_pb2.Object:
    return await client.get("Volume", name, zone=h.ZONE, workspace=h.WORKSPACE)


async def test_a_workload_writes_into_a_local_volume_which_outlives_no_user(
    client: Client, node: str, tmp_path: Path, group: TaskGroup
) -> None:
    await h.declare_node(client, node)
    Controllers(client).start(group)
    await client.apply(storage("local", kind="Local", mountpath=str(tmp_path)))
    await client.apply(volume("home", "local"))

    async def ready() -> object_pb2.Object | None:
        obj = await get_volume(client, "home")
        return obj if obj.volume.status.phase == "Ready" else None

    home = await eventually(ready, what="volume home to be Ready")
    assert home.volume.status.path == f"{tmp_path}/{h.WORKSPACE}/home"
    assert volumes.FINALIZER in home.metadata.finalizers

    async with h.running_agent(client, node):
        await client.apply(writer("writer", cmd="sh -c 'echo hello > /home/out.txt; sleep 600'"))
        written = tmp_path / h.WORKSPACE / "home" / "out.txt"

        async def file_written() -> bool:
            return written.is_file() and written.read_text() == "hello\n"

        await eventually(file_written, within=30, what=f"{written} written by the workload")

        async def used() -> list[str]:
            return list((await get_volume(client, "home")).volume.status.used_by)

        assert await eventually(used, what="usedBy") == ["default/writer.0 (workload writer)"]

        # In use: the delete is held, and the Volume says by whom.
        await client.delete("Volume", "home", zone=h.ZONE, workspace=h.WORKSPACE)

        async def held() -> str:
            obj = await get_volume(client, "home")
            in_use = [c for c in obj.volume.status.conditions if c.type == "InUse"]
            return in_use[0].message if in_use and obj.volume.status.phase == "Terminating" \
                else ""

        message = await eventually(held, what="the InUse condition")
        assert "in use by default/writer.0 (workload writer)" in message
        # Still there a while later: nothing lets it go while the workload runs.
        await eventually(lambda: _sleep_true(1.0), what="a second")
        assert (await get_volume(client, "home")).metadata.HasField("deletion_timestamp")

        # A new container cannot mount a Volume on its way out.
        await client.apply(writer("late", cmd="sleep 600"))

        async def refused() -> str:
            items, _ = await client.list("Container", zone=h.ZONE,
                                         label_selector="dora.io/workload=late")
            status = items[0].container.status if items else None
            return status.message if status and status.reason == "VolumeNotReady" else ""

        assert "is being deleted" in await eventually(refused, within=20,
                                                       what="late to wait for its volume")

        await client.delete("Workload", "writer", zone=h.ZONE, workspace=h.WORKSPACE)
        await client.delete("Workload", "late", zone=h.ZONE, workspace=h.WORKSPACE)

        async def deleted() -> bool:
            items, _ = await client.list("Volume", zone=h.ZONE, workspace=h.WORKSPACE)
            return not items

        await eventually(deleted, within=30, what="the volume to go once unused")
    # The data stays on the storage: deleting a Volume never deletes files.
    assert written.read_text() == "hello\n"


async def _sleep_true(seconds: float) -> bool:
    import anyio

    await anyio.sleep(seconds)
    return True


async def test_a_volume_waits_for_its_storage(client: Client, group: TaskGroup) -> None:
    Controllers(client, controllers=("volume",)).start(group)
    await client.apply(volume("home", "later"))

    async def pending() -> str:
        obj = await get_volume(client, "home")
        ready = [c for c in obj.volume.status.conditions if c.type == "Ready"]
        return ready[0].message if obj.volume.status.phase == "Pending" and ready else ""

    assert await eventually(pending, what="Pending") == \
        "storage 'later' does not exist in zone 'default'"
    await client.apply(storage("later", kind="Local", mountpath="/srv/dora"))

    async def ready() -> str:
        obj = await get_volume(client, "home")
        return obj.volume.status.path if obj.volume.status.phase == "Ready" else ""

    assert await eventually(ready, what="Ready") == "/srv/dora/default/home"


async def test_an_nfs_volume_is_a_docker_volume_pointing_at_the_export(
    client: Client, docker: Any, group: TaskGroup
) -> None:
    Controllers(client, controllers=("volume",)).start(group)
    await client.apply(storage("nfs", kind="NFS", mountpath="/dora-storage-01/share-01",
                               endpoint="10.10.10.1"))
    await client.apply(volume("home", "nfs"))
    await client.apply(volume("special", "nfs", local_path="/my/very/special/path"))

    async def ready() -> bool:
        phases = [(await get_volume(client, n)).volume.status.phase for n in ("home", "special")]
        return phases == ["Ready", "Ready"]

    await eventually(ready, what="both volumes Ready")
    container = objects.new("Container", "web.0", zone=h.ZONE, workspace=h.WORKSPACE)
    container.container.spec.template.volumes.add(name="home", target="/home")
    container.container.spec.template.volumes.add(name="special", target="/s", read_only=True)
    mounts = await Resolver(client=client).mounts(container)
    engine = DockerDriver()
    created = []
    try:
        for mount in mounts:
            docker_volume = dockerspec.docker_volume(mount, zone=h.ZONE)
            await engine.ensure_volume(docker_volume)
            await engine.ensure_volume(docker_volume)  # a second time is a no-op
            created.append(docker_volume.name)
        inspected = json.loads(docker_cli("volume", "inspect", *created))
    finally:
        await engine.close()
        for name in created:
            docker_cli("volume", "rm", "-f", name, check=False)
    by_name = {v["Name"]: v for v in inspected}
    home, special = (by_name[n] for n in created)
    assert home["Driver"] == "local"
    assert home["Options"] == {"type": "nfs", "o": "addr=10.10.10.1,rw,nfsvers=4,hard",
                               "device": ":/dora-storage-01/share-01/default/home"}
    assert special["Options"]["device"] == ":/dora-storage-01/share-01/my/very/special/path"
    assert home["Labels"] == {"dora.zone": "default", "dora.workspace": "default",
                              "dora.volume": "home"}


async def test_a_container_on_nfs_mounts_a_docker_volume_of_the_export(
    client: Client, docker: Any, node: str, group: TaskGroup
) -> None:
    """The agent's whole path: no NFS server answers here, so the container may fail to
    start, with Docker's mount error as the reason; what it was given is checked."""
    Controllers(client, controllers=("volume",)).start(group)
    await client.apply(storage("nfs", kind="NFS", mountpath="/exports/dora",
                               endpoint="127.0.0.1"))
    await client.apply(volume("home", "nfs"))

    async def ready() -> bool:
        return (await get_volume(client, "home")).volume.status.phase == "Ready"

    await eventually(ready, what="volume home Ready")
    created: list[str] = []
    try:
        async with h.running_agent(client, node):
            box = h.bound("box", node)
            box.container.spec.template.volumes.add(name="home", target="/data",
                                                    read_only=True)
            await client.apply(box)

            async def docker_container() -> Any:
                found = h.node_containers(docker, node)
                return found[0] if found else None

            container = await eventually(docker_container, within=30,
                                         what="the Docker container")
            [bind] = container.attrs["HostConfig"]["Binds"]
            name, target, mode = bind.split(":")
            created.append(name)
            assert (target, mode) == ("/data", "ro")
            [inspected] = json.loads(docker_cli("volume", "inspect", name))
            assert inspected["Options"] == {
                "type": "nfs", "o": "addr=127.0.0.1,rw,nfsvers=4,hard",
                "device": ":/exports/dora/default/home"}

            async def reported() -> object_pb2.Object | None:
                obj = await h.get_container(client, "box")
                phase = obj.container.status.phase if obj else ""
                return obj if phase in ("Running", "Failed") else None

            obj = await eventually(reported, within=60, what="box to start or fail")
            if obj.container.status.phase == "Failed":
                assert "mount" in obj.container.status.reason
    finally:
        for container in h.node_containers(docker, node):
            container.remove(force=True)
        for name in created:
            docker_cli("volume", "rm", "-f", name, check=False)


def user(name: str, *, task: str = "", workload: str = "") -> object_pb2.Object:
    """A Container mounting the Volume ``data``: a task's job or a workload's replica."""
    obj = objects.new("Container", name, zone=h.ZONE, workspace=h.WORKSPACE)
    if task:
        obj.metadata.labels[tasks.TASK_LABEL] = task
        obj.metadata.owner_references.add(kind="Task", name=task, uid="uid-of-" + task,
                                          controller=True)
    obj.container.spec.workload = workload or task
    obj.container.spec.template.image.image = h.BUSYBOX
    obj.container.spec.template.volumes.add(name="data")
    return obj


async def test_used_by_names_a_task_once_and_is_capped(client: Client, tmp_path: Path,
                                                      group: TaskGroup) -> None:
    Controllers(client, controllers=("volume",)).start(group)
    await client.apply(storage("local", kind="Local", mountpath=str(tmp_path)))
    await client.apply(volume("data", "local"))
    for index in range(40):
        await client.apply(user(f"sweep.j{index}-0", task="sweep"))

    async def used() -> list[str] | None:
        found = list((await get_volume(client, "data")).volume.status.used_by)
        return found or None

    assert await eventually(used, what="usedBy") == ["default/sweep (task)"]
    # More jobs of the same task change nothing: the Volume is not written again.
    before = (await get_volume(client, "data")).metadata.resource_version
    for index in range(40, 50):
        await client.apply(user(f"sweep.j{index}-0", task="sweep"))
    await eventually(lambda: _sleep_true(1.0), what="a second")
    assert (await get_volume(client, "data")).metadata.resource_version == before

    for index in range(25):
        await client.apply(user(f"web.{index}", workload="web"))

    more = f"... and {26 - (MAX_USED_BY - 1)} more"  # 26 users: the task and 25 replicas

    async def capped() -> list[str] | None:
        found = list((await get_volume(client, "data")).volume.status.used_by)
        return found if found and found[-1] == more else None

    listed = await eventually(capped, what="a capped usedBy")
    assert len(listed) == MAX_USED_BY
    assert listed[0] == "default/sweep (task)"
    assert listed[1:MAX_USED_BY - 1] == sorted(
        f"default/web.{i} (workload web)" for i in range(25))[:MAX_USED_BY - 2]

    # Ended jobs use nothing: once every job of the task ended, the task is not named.
    items, _ = await client.list("Container", zone=h.ZONE, workspace=h.WORKSPACE,
                                 label_selector=f"{tasks.TASK_LABEL}=sweep")
    for job in items:
        job.container.status.phase = "Exited"
        await client.update_status(job)
    for index in range(25):
        await client.delete("Container", f"web.{index}", zone=h.ZONE, workspace=h.WORKSPACE)

    async def unused() -> bool:
        return not (await get_volume(client, "data")).volume.status.used_by

    await eventually(unused, within=30, what="usedBy to empty")
