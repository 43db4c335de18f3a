"""The desktop app (``doractl ui``) in headless Chromium, against a real cluster.

A real ``doractl ui`` process runs with a temporary HOME whose
``~/.dora/config.yaml`` has two contexts (two workspaces of the test's
apiserver), so the page is signed in without a token typed. The cluster is
``tests/integration/test_volume_files.py``'s: etcd, the apiserver, the volume
controller, and an agent on the real Docker engine serving exec and volume files
over a Local storage; a container mounts the volume ``home`` and the test reads
through ``exec`` what the sync sent. Without Chromium or Docker the browser test
is skipped (failed under ``hack/test.sh``); the security checks need neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
import yaml
from playwright.async_api import Browser, expect

from dora.api import codec, errors
from dora.api.client import Client
from dora.apiserver.server import APIServer
from tests.browser.gateway import DIST, ROOT
from tests.browser.test_tutorial import PAGE_ERRORS, Shots, browser, card, missing
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import eventually, group
from tests.integration.test_volume_files import (
    Cluster,
    apiserver_config,
    cluster,
    in_container,
    node,
    with_home,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_scope")]
__all__ = ["apiserver_config", "browser", "cluster", "group", "node"]

OTHER = "elsewhere"  # the second context's workspace


@dataclass
class Desktop:
    url: str  # with the secret
    base: str
    process: subprocess.Popen[bytes]
    home: Path
    log: Path


def workload(name: str, workspace: str = "default") -> object:
    [obj] = codec.decode_yaml(
        f"kind: Workload\nmetadata:\n  name: {name}\n  zone: default\n"
        f"  workspace: {workspace}\nspec:\n  replica:\n    count: 0\n"
        f"  image:\n    image: {h.BUSYBOX}\n")
    return obj


@contextlib.contextmanager
def running_desktop(apiserver_port: int, token: str, tmp_path: Path) -> Iterator[Desktop]:
    """``doractl ui --no-browser`` with a temporary HOME holding two contexts."""
    if not (DIST / "index.html").is_file():
        missing(f"the web app is not built in {DIST}: run hack/web-build.sh")
    home = tmp_path / "home"
    (home / ".dora").mkdir(parents=True)
    server = f"127.0.0.1:{apiserver_port}"
    (home / ".dora" / "config.yaml").write_text(yaml.safe_dump({
        "current-context": "main",
        "contexts": {
            "main": {"endpoint": server, "token": token, "zone": "default",
                     "workspace": "default"},
            "other": {"endpoint": server, "token": token, "zone": "default",
                      "workspace": OTHER},
        }}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("DORA_SERVER", "DORA_TOKEN", "DORA_CONTEXT", "DORA_CONFIG")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    log = tmp_path / "doractl-ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dora.ctl", "ui", "--no-browser"], stdout=out,
            stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"http://127\.0\.0\.1:\d+/\?secret=\S+",
                                      log.read_text())):
            assert process.poll() is None, f"doractl ui exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"doractl ui printed no URL:\n{log.read_text()}"
            time.sleep(0.1)
        url = found.group(0)
        yield Desktop(url, url.split("/?")[0], process, home, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_the_desktop_server_wants_its_secret_a_loopback_host_and_the_origin(
        apiserver: APIServer, admin_token: str, tmp_path: Path) -> None:
    with running_desktop(apiserver.port, admin_token, tmp_path) as desktop:
        async with httpx.AsyncClient(base_url=desktop.base) as http:
            # Without the secret: nothing, not even the page.
            for path in ("/", "/api/desktop", "/api/objects/workloads"):
                assert (await http.get(path)).status_code == 403, path
            wrong = await http.get("/?secret=not-it")
            assert wrong.status_code == 403
            entered = await http.get(desktop.url.removeprefix(desktop.base))
            assert entered.status_code == 303 and entered.headers["location"] == "/"
            cookie = entered.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            # The cookie now: the API answers with the profile's token, never shown.
            me = await http.get("/api/whoami")
            assert me.status_code == 200 and me.json()["user"] == "admin"
            described = (await http.get("/api/desktop")).json()
            assert described["context"] == "main"
            assert [c["name"] for c in described["contexts"]] == ["main", "other"]
            assert admin_token not in str(described)
            # A context added with doractl meanwhile shows in the menu.
            config = desktop.home / ".dora" / "config.yaml"
            data = yaml.safe_load(config.read_text())
            data["contexts"]["third"] = {"endpoint": "127.0.0.1:1", "token": "x"}
            config.write_text(yaml.safe_dump(data))
            described = (await http.get("/api/desktop")).json()
            assert [c["name"] for c in described["contexts"]] == ["main", "other", "third"]
            # Another Host (DNS rebinding), another Origin: refused.
            assert (await http.get("/api/desktop", headers={"Host": "evil.example"})
                    ).status_code == 403
            assert (await http.put("/api/desktop/syncs", headers={
                "Origin": "http://evil.example"}, json={"workload": "w", "folders": []})
                    ).status_code == 403
            # Bad input names the field and writes nothing.
            bad = await http.put("/api/desktop/syncs", json={
                "zone": "default", "workspace": "default", "workload": "w",
                "folders": [{"local": str(tmp_path / "nope"), "volume": "home"}]})
            assert bad.status_code == 422
            assert bad.json()["error"]["violations"][0]["field"] == "folders[0].local"
            assert not (desktop.home / ".dora" / "desktop.yaml").exists()
        desktop.process.send_signal(signal.SIGINT)
        assert desktop.process.wait(15) == 0
    assert "stopped" in desktop.log.read_text()


async def _cat(client: Client, path: str) -> bytes | None:
    try:
        return await in_container(client, "box", "cat", path)
    except AssertionError:
        return None


async def test_sync_folders_from_the_workload_editor_reach_the_container(
        cluster: Cluster, browser: Browser, apiserver: APIServer, admin_token: str,
        tmp_path: Path) -> None:
    client = cluster.client
    await client.apply(workload("trainer"))
    await client.apply(codec.decode_yaml(f"kind: Workspace\nmetadata:\n  name: {OTHER}\n")[0])
    await client.apply(workload("far-job", OTHER))
    await client.apply(with_home("box", cluster.node))
    await h.phase_of(client, "box", "Running")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".doraignore").write_text("*.env\n")
    (project / "secret.env").write_text("TOKEN=x\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.md").write_text("kept\n")
    shots = Shots("desktop")

    with running_desktop(apiserver.port, admin_token, tmp_path) as desktop:
        context = await browser.new_context(viewport={"width": 1400, "height": 820})
        page = await context.new_page()
        errors_seen: list[str] = []
        page.on("pageerror", lambda exc: errors_seen.append(str(exc)))
        PAGE_ERRORS[page] = errors_seen
        await page.goto(desktop.url)
        trainer = card(page, "workload", "trainer")
        await expect(trainer).to_be_visible(timeout=20_000)
        await expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
        await shots.take(page, "signed-in-from-the-profile")

        # The editor's Sync folders tab: two folders, -> home:code and -> home:notes.
        await trainer.get_by_role("button", name="Edit").click()
        await page.get_by_role("button", name="Sync folders").click()
        for i, (local, target) in enumerate([(project, "home:code"), (notes, "home:notes")]):
            await page.get_by_role("button", name="Add a sync folder").click()
            await page.get_by_label("Local folder").nth(i).fill(str(local))
            await page.get_by_label("Volume and path").nth(i).fill(target)
        await shots.take(page, "sync-tab")
        await page.get_by_test_id("editor-save").click()
        await expect(trainer.get_by_test_id("sync-ok")).to_be_visible(timeout=20_000)
        saved = yaml.safe_load((desktop.home / ".dora" / "desktop.yaml").read_text())
        assert saved["syncs"] == [{"context": "main", "zone": "default",
                                   "workspace": "default", "workload": "trainer",
                                   "folders": [{"local": str(project), "volume": "home",
                                                "path": "code"},
                                               {"local": str(notes), "volume": "home",
                                                "path": "notes"}]}]

        # A file written locally: in the container within 2 seconds.
        (project / "hello.txt").write_text("hello from the desktop\n")
        written = time.monotonic()

        async def arrived() -> bool:
            return await _cat(client, "/home/code/hello.txt") == b"hello from the desktop\n"

        await eventually(arrived, within=10, what="hello.txt in the container")
        took = time.monotonic() - written
        print(f"a small file reached the container {took:.2f}s after it was written")
        assert took < 2.0, took
        assert await _cat(client, "/home/code/secret.env") is None  # .doraignore
        # The terminal goes through the desktop server too: it puts the token in the
        # socket's first frame (the page sends none).
        cookies = {c["name"]: c["value"] for c in await context.cookies()}
        assert await _exec_through(desktop, cookies, ["cat", "/home/code/hello.txt"]) == \
            (b"hello from the desktop\n", 0)
        with pytest.raises(websockets.exceptions.InvalidStatus):
            await _exec_through(desktop, {}, ["true"])

        # 50 MB: the spinner while it goes, then the check mark.
        with (project / "big.bin").open("wb") as out:
            out.write(os.urandom(50 * 1024 * 1024))
        started = time.monotonic()
        await expect(trainer.get_by_test_id("sync-spinner")).to_be_visible(timeout=10_000)
        await shots.take(page, "spinner")
        await expect(trainer.get_by_test_id("sync-ok")).to_be_visible(timeout=60_000)
        print(f"50 MB synced in {time.monotonic() - started:.2f}s (spinner to check mark)")
        await shots.take(page, "synced")
        size = await in_container(client, "box", "wc", "-c", "/home/code/big.bin")
        assert size.split()[0] == str(50 * 1024 * 1024).encode()

        # Deleted locally: gone in the container.
        (project / "hello.txt").unlink()

        async def gone() -> bool:
            return await _cat(client, "/home/code/hello.txt") is None

        await eventually(gone, within=10, what="hello.txt gone")

        # A stopped workload's syncs pause; started again, they go on.
        await trainer.get_by_role("button", name="Stop").click()
        await expect(trainer.get_by_test_id("sync-paused")).to_be_visible(timeout=10_000)
        await trainer.get_by_role("button", name="Start").click()
        await expect(trainer.get_by_test_id("sync-ok")).to_be_visible(timeout=20_000)

        # A local folder that disappears: that sync stops with an error, and nothing
        # of it is deleted on the volume.
        assert (cluster.home / "notes" / "keep.md").read_text() == "kept\n"
        notes.rename(tmp_path / "notes-moved")
        await expect(trainer.get_by_test_id("sync-error")).to_contain_text(
            f"the folder {notes} is gone", timeout=10_000)
        await shots.take(page, "folder-gone")
        await asyncio.sleep(1.5)
        assert (cluster.home / "notes" / "keep.md").read_text() == "kept\n"
        assert (cluster.home / "code" / "big.bin").is_file()
        # The folder back, and the editor saved again: that sync starts again.
        (tmp_path / "notes-moved").rename(notes)
        await trainer.get_by_role("button", name="Edit").click()
        await page.get_by_role("button", name="Sync folders").click()
        await expect(page.get_by_label("Local folder")).to_have_count(2)
        await page.get_by_test_id("editor-save").click()
        await expect(trainer.get_by_test_id("sync-ok")).to_be_visible(timeout=20_000)
        await expect(trainer.get_by_test_id("sync-error")).to_have_count(0)

        # The volume deleted: an error badge; the local files stay.
        await client.delete("Container", "box")
        await eventually(lambda: _absent(client, "Container", "box"), within=60,
                         what="the container gone")
        await client.delete("Volume", "home")
        badges = trainer.get_by_test_id("sync-error")
        await expect(badges).to_have_count(2, timeout=30_000)  # both folders go there
        await expect(badges).to_contain_text(["volume/home", "volume/home"])
        await expect(badges.first).to_contain_text("not found")
        await shots.take(page, "volume-gone")
        assert (project / "big.bin").stat().st_size == 50 * 1024 * 1024
        assert (project / "secret.env").is_file()

        # The other context: the other workspace's workloads.
        await page.get_by_test_id("context-menu").select_option("other")
        await expect(card(page, "workload", "far-job")).to_be_visible(timeout=20_000)
        await expect(trainer).to_have_count(0)
        await shots.take(page, "other-context")
        assert errors_seen == [], errors_seen

        desktop.process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(desktop.process.wait, 15) == 0
    assert "stopped" in desktop.log.read_text()


async def _exec_through(desktop: Desktop, cookies: dict[str, str],
                        command: list[str]) -> tuple[bytes, int]:
    """``command`` in the container ``box`` over the desktop's exec WebSocket."""
    url = desktop.base.replace("http://", "ws://") + "/api/containers/box/exec"
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    out = b""
    async with websockets.connect(url, additional_headers={"Cookie": header} if header
                                  else {}) as socket:
        await socket.send(json.dumps({"token": "", "command": command, "rows": 24,
                                      "cols": 80}))
        async for message in socket:
            if isinstance(message, bytes):
                out += message
                continue
            said = json.loads(message)
            assert "exit" in said, said
            return out.replace(b"\r\n", b"\n"), said["exit"]
    raise AssertionError(f"no exit code; output {out!r}")


async def _absent(client: Client, kind: str, name: str) -> bool:
    try:
        await client.get(kind, name)
    except errors.NotFound:
        return True
    return False

