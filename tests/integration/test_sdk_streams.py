"""The SDK's exec, logs, wait and volume files end to end: the synchronous client →
the apiserver → a real agent on the real Docker engine (the cluster of
``test_volume_files``: a Local storage, volume ``home``, the agent's stream and file
server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import dora
from dora.api import errors
from tests.integration import agent_harness as h
from tests.integration.test_sdk import profile
from tests.integration.test_volume_files import (
    Cluster,
    apiserver_config,
    cluster,
    group,
    node,
    with_home,
)

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["apiserver_config", "cluster", "group", "node", "profile"]


async def test_exec_logs_wait_upload_download(cluster: Cluster, profile: Path,
                                              tmp_path: Path) -> None:
    await cluster.client.apply(with_home(
        "box", cluster.node, cmd='sh -c "for i in 1 2 3; do echo n$i; done; sleep 600"'))
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_text("alpha\n")
    (local / "sub" / "b.txt").write_text("beta\n")

    def script() -> None:
        with dora.Client.from_profile() as c:
            running = c.wait("container", "box", "phase=Running", timeout=30)
            assert running is not None and running.status["nodeName"] == cluster.node

            result = c.exec("box", ["sh", "-c", "echo out; echo err >&2; exit 3"])
            assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
            assert c.exec("box", ["wc", "-c"], stdin="12345").stdout.strip() == "5"

            lines = []
            for line in c.logs("box", follow=True):
                lines.append(line)
                if line == "n3":
                    break  # leaving the loop closes the stream
            assert lines == ["n1", "n2", "n3"]
            assert list(c.logs("box", tail=1)) == ["n3"]

            assert c.upload("home", local, "project") == ["project/a.txt",
                                                          "project/sub/b.txt"]
            assert sorted(c.files("home", "project")) == ["project/a.txt",
                                                           "project/sub/b.txt"]
            seen = c.exec("box", ["cat", "/home/project/sub/b.txt"])
            assert seen.stdout == "beta\n"
            out = c.download("home", "project/a.txt", tmp_path)
            assert out == tmp_path / "a.txt" and out.read_text() == "alpha\n"
            with pytest.raises(errors.NotFound):
                c.download("home", "project/missing.txt", tmp_path)

    await asyncio.to_thread(script)
    await h.phase_of(cluster.client, "box", "Running")


async def test_sync_mirrors_a_folder_once_and_then_follows_it(cluster: Cluster, profile: Path,
                                                              tmp_path: Path) -> None:
    local = tmp_path / "code"
    (local / "pkg").mkdir(parents=True)
    (local / "train.py").write_text("print('v1')\n")
    (local / "pkg" / "util.py").write_text("X = 1\n")
    (local / "big.ckpt").write_text("weights\n")
    (local / ".doraignore").write_text("*.ckpt\n")

    def once() -> dora.Synced:
        with dora.Client.from_profile() as c:
            return c.sync(local, "home", "code")

    first = await asyncio.to_thread(once)
    assert sorted(first.sent) == ["code/.doraignore", "code/pkg/util.py", "code/train.py"]
    assert (first.deleted, first.problems) == ([], [])
    again = await asyncio.to_thread(once)  # nothing differs: nothing sent
    assert again.sent == []

    looks: list[dora.Synced] = []
    changed = asyncio.Event()

    def on_change(done: dora.Synced) -> None:
        looks.append(done)
        if "code/pkg/util.py" in done.deleted:
            changed.set()

    async with dora.AsyncClient.from_profile() as client:
        following = asyncio.create_task(client.sync(local, "home", "/code/", follow=True,
                                                    interval=0.1, on_change=on_change))
        await asyncio.sleep(0.5)
        (local / "train.py").write_text("print('v2')\n")
        (local / "pkg" / "util.py").unlink()
        await asyncio.wait_for(changed.wait(), 20)
        following.cancel()
        with pytest.raises(asyncio.CancelledError):
            await following
        assert sorted(await client.files("home", "code")) == ["code/.doraignore",
                                                               "code/train.py"]
        with pytest.raises(errors.Invalid, match="interval"):
            await client.sync(local, "home", interval=0)
        with pytest.raises(errors.NotFound):
            await client.sync(tmp_path / "missing", "home")
    assert looks[-1].sent == ["code/train.py"]
