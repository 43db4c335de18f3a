"""Volume files end to end: client → apiserver → the agent's server → a Local storage,
and the container sees the same files.

Real etcd, the apiserver and the volume controller in-process, a real agent on the
real Docker engine with its gRPC server (logs/exec and volume files) on a free
port named by the Node's endpoint. The agent's file service reads Volumes and
Storages with a node token of seed 004's ``node-rep`` role, as in ``make up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dora.agent.docker_streams import DockerStreams
from dora.agent.server import AgentServer
from dora.agent.streams import AgentStreamsService
from dora.agent.volumefiles import AgentVolumeFilesService
from dora.agent.volumes import Resolver
from dora.api import errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2, volumes_pb2
from dora.apiserver.server import APIServer, Config
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import (
    Controllers,
    SimNode,
    TaskGroup,
    eventually,
    group,
)
from tests.integration.test_ctl_support import Background, Ctl

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

SECRET = "test-secret-0123456789abcdef"
HOME = volumes_pb2.VolumeTarget(name="home")


@pytest.fixture
def apiserver_config(apiserver_config: Config) -> Config:
    return dataclasses.replace(apiserver_config, agent_secret=SECRET)


@pytest.fixture
def node(docker: Any, tmp_path: Path) -> Iterator[str]:
    name = h.new_node_name()
    with h.volumes_removed(docker, tmp_path), h.cleaned(docker, name):
        yield name


async def node_token(client: Client, node: str) -> str:
    """Seed 004's node-rep role and node user, and a token for it bound to ``node``."""
    role = objects.new("Role", "node-rep")
    role.role.spec.permission["Node"].verbs.append("report")
    await client.apply(role)
    user = objects.new("User", "node")
    user.user.spec.resources.add(kind="Node", zone="All", workspace="All", role="node-rep")
    await client.apply(user)
    token, _ = await client.create_token("node", "default", "agent", node=node)
    return token


@dataclasses.dataclass
class Cluster:
    client: Client
    node: str
    storage: Path

    @property
    def home(self) -> Path:
        return self.storage / h.WORKSPACE / "home"


@pytest.fixture
async def cluster(client: Client, apiserver: APIServer, node: str, tmp_path: Path,
                  group: TaskGroup) -> AsyncIterator[Cluster]:
    storage = tmp_path / "storage"
    obj = objects.new("Storage", "local", zone=h.ZONE)
    obj.storage.spec.kind, obj.storage.spec.mountpath = "Local", str(storage)
    await client.apply(obj)
    volume = objects.new("Volume", "home", zone=h.ZONE, workspace=h.WORKSPACE)
    volume.volume.spec.storage = "local"
    await client.apply(volume)
    Controllers(client, controllers=("volume",)).start(group)
    token = await node_token(client, node)
    streams = DockerStreams(node=node, host="unix:///var/run/docker.sock")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token, timeout=10) as as_node:
        server = AgentServer(listen="127.0.0.1:0", secret=SECRET, handlers=[
            AgentStreamsService(docker=streams).handler(),
            AgentVolumeFilesService(resolver=Resolver(client=as_node)).handler(),
        ])
        await server.start()
        try:
            declared = objects.new("Node", node, zone=h.ZONE)
            declared.node.spec.endpoint = f"http://127.0.0.1:{server.port}"
            declared.node.spec.allow.append("CPUWorkload")
            await client.apply(declared)
            async with h.running_agent(as_node, node):
                async def ready() -> bool:
                    got = await client.get("Volume", "home", zone=h.ZONE,
                                           workspace=h.WORKSPACE)
                    reported = await client.get("Node", node, zone=h.ZONE)
                    return (got.volume.status.phase, reported.node.status.phase) == \
                        ("Ready", "Ready")

                await eventually(ready, what="volume home and the node Ready")
                yield Cluster(client, node, storage)
        finally:
            await server.stop(0)
            streams.close()


def with_home(name: str, node: str, *, cmd: str = "sleep 600") -> object_pb2.Object:
    obj = h.bound(name, node, cmd=cmd)
    obj.container.spec.template.volumes.add(name="home", target="/home")
    return obj


async def in_container(client: Client, name: str, *command: str) -> bytes:
    async with client.exec(name, list(command)) as session:
        out, err, code = await session.wait()
    assert code == 0, err
    return out


async def test_an_uploaded_file_is_seen_by_the_container_and_listed(
    cluster: Cluster, tmp_path: Path
) -> None:
    files = cluster.client.volume_files()
    local = tmp_path / "train.py"
    local.write_text("print('hi')\n")
    os.chmod(local, 0o755)
    info = await files.upload(HOME, "/src/train.py", local)
    assert (info.path, info.size) == ("src/train.py", 12)
    assert info.sha256 == hashlib.sha256(b"print('hi')\n").hexdigest()
    assert (cluster.home / "src" / "train.py").read_text() == "print('hi')\n"

    await cluster.client.apply(with_home("box", cluster.node))
    await h.phase_of(cluster.client, "box", "Running")
    assert await in_container(cluster.client, "box", "cat", "/home/src/train.py") == \
        b"print('hi')\n"

    listing = await files.list(HOME, "", recursive=True, checksums=True)
    assert [(f.path, f.is_dir) for f in listing.files] == [("src", True),
                                                            ("src/train.py", False)]
    assert listing.files[1].mode == 0o755
    assert listing.files[1].sha256 == info.sha256
    assert (await files.list(HOME, "nothing/here")).exists is False


async def test_a_file_the_container_writes_can_be_downloaded(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    await cluster.client.apply(with_home(
        "writer", cluster.node,
        cmd="sh -c 'head -c 3000000 /dev/urandom > /home/out.bin; sleep 600'"))
    await h.phase_of(cluster.client, "writer", "Running")
    written = cluster.home / "out.bin"

    async def complete() -> bool:
        return written.is_file() and written.stat().st_size == 3_000_000

    await eventually(complete, what="the container's file")
    seen: list[int] = []
    local = tmp_path / "down" / "out.bin"
    info = await cluster.client.volume_files().download(HOME, "out.bin", local,
                                                        progress=seen.append)
    assert local.read_bytes() == written.read_bytes()
    assert info.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
    assert sum(seen) == 3_000_000 and len(seen) >= 3  # streamed in chunks


async def test_transfers_resume_and_a_wrong_partial_is_caught(cluster: Cluster,
                                                              tmp_path: Path) -> None:
    files = cluster.client.volume_files()
    data = os.urandom(2_500_000)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    # An upload interrupted after 1 MB left its partial on the storage.
    cluster.home.mkdir(parents=True, exist_ok=True)
    (cluster.home / ".big.bin.dora-partial").write_bytes(data[:1_000_000])
    assert (await files.list(HOME, "big.bin")).partial_size == 1_000_000
    sent: list[int] = []
    await files.upload(HOME, "big.bin", local, progress=sent.append)
    assert (cluster.home / "big.bin").read_bytes() == data
    assert sent[0] == 1_000_000  # counted as already there, not sent again
    assert not (cluster.home / ".big.bin.dora-partial").exists()

    # A partial of some other content: the sha256 check catches it, sent again whole.
    (cluster.home / ".big.bin.dora-partial").write_bytes(b"x" * 1_000_000)
    await files.upload(HOME, "big.bin", local)
    assert (cluster.home / "big.bin").read_bytes() == data

    # A download interrupted after 1 MB continues its local partial.
    down = tmp_path / "down.bin"
    (tmp_path / "down.bin.dora-partial").write_bytes(data[:1_000_000])
    got: list[int] = []
    await files.download(HOME, "big.bin", down, progress=got.append)
    assert down.read_bytes() == data and got[0] == 1_000_000
    assert not (tmp_path / "down.bin.dora-partial").exists()


async def test_paths_cannot_leave_the_volume(cluster: Cluster, tmp_path: Path) -> None:
    files = cluster.client.volume_files()
    local = tmp_path / "x"
    local.write_text("x")
    for path in ("../escaped", "/../../escaped", "a/../../escaped"):
        with pytest.raises(errors.Invalid, match=r"must not contain '\.\.'"):
            await files.upload(HOME, path, local)
        with pytest.raises(errors.Invalid, match=r"'\.\.'"):
            await files.download(HOME, path, tmp_path / "y")
        with pytest.raises(errors.Invalid, match=r"'\.\.'"):
            await files.list(HOME, path)
    assert not (cluster.storage / h.WORKSPACE / "escaped").exists()

    # A symbolic link a container could leave in its volume leads nowhere.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    cluster.home.mkdir(parents=True, exist_ok=True)
    (cluster.home / "evil").symlink_to(outside)
    (cluster.home / "evil-file").symlink_to(outside / "secret")
    with pytest.raises(errors.Invalid, match="leads outside volume default/home"):
        await files.download(HOME, "evil/secret", tmp_path / "stolen")
    with pytest.raises(errors.Invalid, match="leads outside"):
        await files.download(HOME, "evil-file", tmp_path / "stolen")
    with pytest.raises(errors.Invalid, match="leads outside"):
        await files.upload(HOME, "evil/planted", local)
    with pytest.raises(errors.Invalid, match="leads outside"):
        await files.delete(HOME, ["evil/secret"])
    with pytest.raises(errors.Invalid, match="leads outside"):
        await files.list(HOME, "evil")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    # Deleting the link itself is fine: it is in the volume; its target stays.
    assert await files.delete(HOME, ["evil"]) == 1
    assert (outside / "secret").read_text() == "secret"
    with pytest.raises(errors.Invalid, match="root"):
        await files.delete(HOME, ["/"])


async def test_verbs_are_checked_on_the_volume(cluster: Cluster, apiserver: APIServer,
                                               tmp_path: Path) -> None:
    role = objects.new("Role", "reader")
    role.role.spec.permission["Volume"].verbs.extend(["Get", "Ls", "Download"])
    await cluster.client.apply(role)
    user = objects.new("User", "bob")
    user.user.spec.resources.add(kind="Volume", zone="All", workspace="default", role="reader")
    await cluster.client.apply(user)
    token, _ = await cluster.client.create_token("bob", "default", "1")
    local = tmp_path / "x"
    local.write_text("x")
    await cluster.client.volume_files().upload(HOME, "x", local)
    async with Client(f"127.0.0.1:{apiserver.port}", token=token, timeout=10) as bob:
        files = bob.volume_files()
        assert [f.path for f in (await files.list(HOME)).files] == ["x"]
        await files.download(HOME, "x", tmp_path / "x2")
        with pytest.raises(errors.Forbidden, match="may not Upload Volume"):
            await files.upload(HOME, "y", local, resume=False)
        with pytest.raises(errors.Forbidden, match="may not Sync Volume"):
            await files.list(HOME, sync=True)
        with pytest.raises(errors.Forbidden, match="may not Upload Volume"):
            await files.delete(HOME, ["x"])
    with contextlib.suppress(FileNotFoundError):
        assert (cluster.home / "x").read_text() == "x"


async def test_a_volume_that_is_not_ready_is_refused_with_the_reason(cluster: Cluster,
                                                                     tmp_path: Path) -> None:
    volume = objects.new("Volume", "orphan", zone=h.ZONE, workspace=h.WORKSPACE)
    volume.volume.spec.storage = "missing"
    await cluster.client.apply(volume)

    async def pending() -> bool:
        got = await cluster.client.get("Volume", "orphan", zone=h.ZONE, workspace=h.WORKSPACE)
        return got.volume.status.phase == "Pending"

    await eventually(pending, what="orphan Pending")
    with pytest.raises(errors.DoraError, match="storage 'missing' does not exist"):
        await cluster.client.volume_files().list(volumes_pb2.VolumeTarget(name="orphan"))


# -- doractl ----------------------------------------------------------------------------


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "ctl")


async def test_doractl_volume_upload_ls_download_rm(cluster: Cluster, ctl: Ctl,
                                                   tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "mod.py").write_text("x = 1\n")
    (project / "run.sh").write_text("echo run\n")
    (project / "cache.pyc").write_text("junk")
    (project / ".doraignore").write_text("*.pyc\n")
    single = tmp_path / "notes.txt"
    single.write_text("notes\n")
    result = await ctl.ok("volume", "upload", str(project), str(single), "home:/code")
    assert "4 file(s) uploaded to volume home:/code" in result.err
    assert (cluster.home / "code" / "project" / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert (cluster.home / "code" / "notes.txt").read_text() == "notes\n"
    assert not (cluster.home / "code" / "project" / "cache.pyc").exists()

    listing = await ctl.ok("volume", "ls", "home:/code", "-R")
    assert listing.lines[0].split() == ["MODE", "SIZE", "MODIFIED", "PATH"]
    paths = [line.split()[-1] for line in listing.lines[1:]]
    assert paths == ["code/notes.txt", "code/project/", "code/project/.doraignore",
                     "code/project/pkg/", "code/project/pkg/mod.py", "code/project/run.sh"]

    out = tmp_path / "out"
    out.mkdir()
    await ctl.ok("volume", "download", "home:/code/project", str(out))
    assert (out / "project" / "pkg" / "mod.py").read_text() == "x = 1\n"
    await ctl.ok("volume", "download", "home:code/notes.txt", str(out / "n.txt"))
    assert (out / "n.txt").read_text() == "notes\n"

    refused = await ctl("volume", "download", "home:../../etc/passwd", str(out))
    assert refused.code == 2 and "must not contain '..'" in refused.err
    missing = await ctl("volume", "ls", "home:/nothing")
    assert missing.code == 1 and "/nothing does not exist" not in missing.out
    assert "nothing does not exist in volume home" in missing.err

    assert (await ctl.ok("volume", "rm", "-r", "home:code/project")).out == \
        "1 path(s) deleted\n"
    assert not (cluster.home / "code" / "project").exists()


async def test_doractl_sync_mirrors_edits_and_deletions_into_the_container(
    cluster: Cluster, ctl: Ctl, tmp_path: Path
) -> None:
    await cluster.client.apply(with_home("box", cluster.node))
    await h.phase_of(cluster.client, "box", "Running")
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print(1)\n")
    (project / "src" / "util.py").write_text("u = 1\n")
    (project / "secret.env").write_text("TOKEN=x\n")
    (project / ".doraignore").write_text("*.env\n")
    # Already there and the same: not sent again.
    (cluster.home / "code" / "src").mkdir(parents=True)
    (cluster.home / "code" / "src" / "util.py").write_text("u = 1\n")

    sync = await ctl.start("sync", str(project), "home:/code", "--interval", "0.2")
    try:
        started = await _stderr_until(sync, "following")
        assert "2 file(s) sent, 3 in sync" in started, started
        assert await in_container(cluster.client, "box", "cat", "/home/code/src/main.py") == \
            b"print(1)\n"
        assert not (cluster.home / "code" / "secret.env").exists()

        (project / "src" / "main.py").write_text("print(2)\n")
        edited = asyncio.get_running_loop().time()

        async def sees_the_edit() -> bool:
            return await in_container(cluster.client, "box", "cat",
                                      "/home/code/src/main.py") == b"print(2)\n"

        await eventually(sees_the_edit, within=5, what="the container to see the edit")
        assert asyncio.get_running_loop().time() - edited < 2.0

        (project / "src" / "util.py").unlink()
        (project / "docs").mkdir()
        (project / "docs" / "a.md").write_text("# a\n")

        async def mirrored() -> bool:
            return not (cluster.home / "code" / "src" / "util.py").exists() and \
                (cluster.home / "code" / "docs" / "a.md").is_file()

        await eventually(mirrored, within=5, what="the deletion and the new folder")
        import shutil

        shutil.rmtree(project / "docs")

        async def folder_gone() -> bool:
            return not (cluster.home / "code" / "docs").exists()

        await eventually(folder_gone, within=5, what="the deleted folder to go")
    finally:
        sync.process.send_signal(signal.SIGINT)
        result = await sync.finish()
    assert "↑ code/src/main.py" in result.err and "✗ code/src/util.py" in result.err
    assert "↑ code/src/util.py" not in result.err  # matched by size and sha256 at the start
    assert result.code in (0, 130)


async def _stderr_until(background: Background, text: str) -> str:
    stream = background.process.stderr
    assert stream is not None
    seen = ""
    async with asyncio.timeout(30):
        while text not in seen:
            line = await stream.readline()
            if not line:
                break
            seen += line.decode()
    return seen


async def test_doractl_delete_of_a_volume_in_use_says_it_is_held_and_by_whom(
    cluster: Cluster, ctl: Ctl
) -> None:
    await cluster.client.apply(with_home("box", cluster.node))
    await h.phase_of(cluster.client, "box", "Running")

    async def used() -> bool:
        got = await cluster.client.get("Volume", "home", zone=h.ZONE, workspace=h.WORKSPACE)
        return list(got.volume.status.used_by) == ["default/box (workload web)"]

    await eventually(used, what="usedBy")
    result = await ctl.ok("delete", "volume", "home")
    assert result.out == ("volume/home is in use by default/box (workload web): it is "
                          "deleted once they stop\n")
    listed = await ctl.ok("get", "volumes")
    assert "Terminating" in listed.out
    with pytest.raises(errors.DoraError, match="is being deleted"):
        await cluster.client.volume_files().list(HOME)

    await cluster.client.delete("Container", "box", zone=h.ZONE, workspace=h.WORKSPACE)

    async def gone() -> bool:
        items, _ = await cluster.client.list("Volume", zone=h.ZONE, workspace=h.WORKSPACE)
        return not items

    await eventually(gone, within=20, what="the volume to go with its last user")


async def test_a_file_where_a_folder_is_needed_is_refused_without_naming_the_host(
    cluster: Cluster, tmp_path: Path
) -> None:
    files = cluster.client.volume_files()
    local = tmp_path / "x"
    local.write_text("x")
    await files.upload(HOME, "a", local)
    with pytest.raises(errors.DoraError, match="a file stands where a folder") as caught:
        await files.upload(HOME, "a/b", local)
    assert str(cluster.storage) not in caught.value.message


async def test_another_workspaces_volume_mounts_read_only(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    await cluster.client.apply(objects.new("Workspace", "datasets"))
    dataset = objects.new("Volume", "imagenet", zone=h.ZONE, workspace="datasets")
    dataset.volume.spec.storage = "local"
    await cluster.client.apply(dataset)
    target = volumes_pb2.VolumeTarget(workspace="datasets", name="imagenet")

    async def ready() -> bool:
        got = await cluster.client.get("Volume", "imagenet", zone=h.ZONE,
                                       workspace="datasets")
        return got.volume.status.phase == "Ready"

    await eventually(ready, what="imagenet Ready")
    local = tmp_path / "labels.txt"
    local.write_text("cat\ndog\n")
    await cluster.client.volume_files().upload(target, "labels.txt", local)
    assert (cluster.storage / "datasets" / "imagenet" / "labels.txt").is_file()

    box = h.bound("box", cluster.node)
    box.container.spec.template.volumes.add(name="imagenet", workspace="datasets",
                                            target="/imagenet", read_only=True)
    await cluster.client.apply(box)
    await h.phase_of(cluster.client, "box", "Running")
    assert await in_container(cluster.client, "box", "cat", "/imagenet/labels.txt") == \
        b"cat\ndog\n"
    async with cluster.client.exec("box", ["touch", "/imagenet/new"]) as session:
        _, err, code = await session.wait()
    assert code != 0 and b"Read-only file system" in err

    async def used() -> list[str]:
        got = await cluster.client.get("Volume", "imagenet", zone=h.ZONE,
                                       workspace="datasets")
        return list(got.volume.status.used_by)

    assert await eventually(used, what="usedBy") == ["default/box (workload web)"]


async def test_doractl_sync_once_with_prune_leaves_the_volume_like_the_folder(
    cluster: Cluster, ctl: Ctl, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.py").write_text("a\n")
    (project / "local.env").write_text("x\n")
    (project / ".doraignore").write_text("*.env\n")
    remote = cluster.home / "code"
    remote.mkdir(parents=True)
    (remote / "stale.py").write_text("old\n")
    (remote / "server.env").write_text("kept: ignored names are never pruned\n")
    result = await ctl.ok("sync", "--once", "--prune", str(project), "home:code")
    assert "✗ code/stale.py" in result.err
    assert sorted(p.name for p in remote.iterdir()) == [".doraignore", "a.py", "server.env"]
    again = await ctl.ok("sync", "--once", str(project), "home:code")
    assert "0 file(s) sent, 2 in sync" in again.err


async def test_nfs_volume_files_go_to_a_node_that_mounts_the_export(
    cluster: Cluster, apiserver: APIServer, tmp_path: Path, group: TaskGroup
) -> None:
    nfs = objects.new("Storage", "nfs", zone=h.ZONE)
    nfs.storage.spec.kind, nfs.storage.spec.endpoint = "NFS", "10.10.10.1"
    nfs.storage.spec.mountpath = "/exports/share"
    await cluster.client.apply(nfs)
    shared = objects.new("Volume", "shared", zone=h.ZONE, workspace=h.WORKSPACE)
    shared.volume.spec.storage = "nfs"
    await cluster.client.apply(shared)
    target = volumes_pb2.VolumeTarget(name="shared")

    async def ready() -> bool:
        got = await cluster.client.get("Volume", "shared", zone=h.ZONE, workspace=h.WORKSPACE)
        return got.volume.status.phase == "Ready"

    await eventually(ready, what="shared Ready")
    files = cluster.client.volume_files()
    # The only node does not mount the export: refused, naming why.
    with pytest.raises(errors.DoraError, match=r"no Ready node of zone 'default' reaches "
                       r"the storage of volume default/shared \(node-.*does not reach NFS "
                       r"storage 'nfs'"):
        await files.list(target)

    # A second node has the export mounted (here: a directory standing for the mount).
    export = tmp_path / "mnt-share"
    export.mkdir()
    server = AgentServer(listen="127.0.0.1:0", secret=SECRET, handlers=[
        AgentVolumeFilesService(resolver=Resolver(client=cluster.client),
                                storage_mounts={"nfs": str(export)}).handler(),
    ])
    await server.start()
    try:
        nfs_node = SimNode(cluster.client, "zz-nfs")  # asked after the first node
        await nfs_node.start(group)
        declared = objects.new("Node", "zz-nfs", zone=h.ZONE)
        declared.node.spec.endpoint = f"127.0.0.1:{server.port}"
        declared.node.spec.allow.append("CPUWorkload")
        await cluster.client.apply(declared)
        local = tmp_path / "weights.bin"
        local.write_bytes(os.urandom(100_000))
        await files.upload(target, "models/weights.bin", local)
        assert (export / "default" / "shared" / "models" / "weights.bin").read_bytes() == \
            local.read_bytes()
        assert [f.path for f in (await files.list(target, recursive=True)).files] == \
            ["models", "models/weights.bin"]
        await files.download(target, "models/weights.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
        nfs_node.kill()
    finally:
        await server.stop(0)
