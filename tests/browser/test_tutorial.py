"""Seed 000's web tutorial in headless Chromium, against a real cluster: etcd, the
apiserver, the controllers, an agent running containers on the real Docker engine
(with its stream server, for the shell), and ``dora-web`` as its own process.

Debian's ``/usr/bin/chromium`` is driven by Playwright (``hack/install-deps.sh
chromium``; no browser download). A screenshot of each step goes to
``tests/browser/artifacts/`` (not committed). Under ``hack/test.sh``
(``DORA_REQUIRE_BROWSER=1``) a missing Chromium or Docker engine fails the test
instead of skipping it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from dora.api import codec, objects
from dora.api.client import Client
from dora.apiserver.server import APIServer, Config
from tests.browser.gateway import DIST, ROOT, Gateway, running_gateway
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import Background, Controllers
from tests.integration.test_streams import SECRET, agent_server, declare

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_scope")]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "browser" / "artifacts"
REQUIRED = os.environ.get("DORA_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"
SLOW = 90_000  # ms: a container started on a busy machine


def missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def apiserver_config(apiserver_config: Config) -> Config:
    return dataclasses.replace(apiserver_config, agent_secret=SECRET)


@pytest.fixture
def docker() -> Iterator[Any]:
    try:
        client = h.docker_or_skip()
    except pytest.skip.Exception as exc:
        missing(str(exc))
        raise
    yield client
    client.close()


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


@pytest.fixture
async def cluster(client: Client, node: str) -> AsyncIterator[str]:
    """The controllers, and an agent on the local Docker engine with its stream server."""
    background = Background()
    async with agent_server(node) as server:
        await declare(client, node, f"http://127.0.0.1:{server.port}")
        async with h.running_agent(client, node):
            Controllers(client).start(background)
            try:
                yield node
            finally:
                await background.close()


@pytest.fixture
def web(apiserver: APIServer, tmp_path: Path) -> Iterator[Gateway]:
    if not (DIST / "index.html").is_file():
        missing(f"the web app is not built in {DIST}: run hack/web-build.sh")
    with running_gateway(apiserver.port, tmp_path / "dora-web.log") as gateway:
        yield gateway


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(CHROMIUM.exists):
        missing(f"no {CHROMIUM}: install it with hack/install-deps.sh chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield launched
        await launched.close()


class Shots:
    """A numbered screenshot of each step."""

    def __init__(self, name: str) -> None:
        self.dir = ARTIFACTS / name
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.png"):
            old.unlink()
        self.count = 0

    async def take(self, page: Page, step: str) -> None:
        self.count += 1
        await page.screenshot(path=self.dir / f"{self.count:02d}-{step}.png")


async def sign_in(browser: Browser, web: Gateway, token: str) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 820})
    page = await context.new_page()
    # An uncaught error in the page fails the test at the end (see ``no_page_errors``).
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    PAGE_ERRORS[page] = errors
    await page.goto(web.url + "/")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


PAGE_ERRORS: dict[Page, list[str]] = {}


def no_page_errors(page: Page) -> None:
    assert PAGE_ERRORS.get(page) == [], f"errors in the page: {PAGE_ERRORS.get(page)}"


def card(page: Page | Locator, kind: str, name: str) -> Locator:
    return page.get_by_test_id(f"{kind}-{name}")


async def test_the_seed_000_tutorial_in_the_browser(
        browser: Browser, web: Gateway, cluster: str, client: Client,
        admin_token: str) -> None:
    shots = Shots("tutorial")
    # Another user, bound to the workspace `lab` only.
    token = await other_users_token(client)
    page = await sign_in(browser, web, admin_token)
    try:
        await tutorial(page, shots, browser, web, client, token)
    except BaseException:
        await shots.take(page, "FAILED")
        raise
    no_page_errors(page)


async def tutorial(page: Page, shots: Shots, browser: Browser, web: Gateway,
                   client: Client, token: str) -> None:
    await expect(page.get_by_role("button", name="Create the first workload")).to_be_visible()
    await shots.take(page, "signed-in")

    # The workload editor: name, 0 instances, image and command, CPU hardware.
    await page.get_by_role("button", name="Create the first workload").click()
    editor = page.get_by_role("dialog", name="New workload")
    await editor.get_by_label("Name").fill("blue")
    await expect(editor.get_by_label("Number of instances")).to_have_value("0")
    await editor.get_by_role("button", name="Image").click()
    await editor.get_by_label("Image").fill(h.BUSYBOX)
    await editor.get_by_label("Start command").fill('sh -c "echo hello from blue; sleep 3600"')
    await editor.get_by_role("button", name="Hardware").click()
    await expect(editor.get_by_label("CPUs per container")).to_have_value("1")
    await editor.get_by_role("button", name="Scheduler").click()
    await expect(editor.get_by_label("Restart policy")).to_have_value("Never")
    await shots.take(page, "editor")
    await editor.get_by_test_id("editor-save").click()
    blue = card(page, "workload", "blue")
    await expect(blue.get_by_test_id("replicas")).to_have_text("0/0")
    await shots.take(page, "created-0-of-0")

    # + → a container reaches the Running column; + again → 2/2.
    await blue.get_by_role("button", name="Add a replica").click()
    running = page.get_by_test_id("column-running")
    await expect(card(running, "container", "blue.0")).to_be_visible(timeout=SLOW)
    await expect(blue.get_by_test_id("replicas")).to_have_text("1/1", timeout=SLOW)
    await shots.take(page, "one-running")
    await blue.get_by_role("button", name="Add a replica").click()
    await expect(running.locator("[data-testid^='container-blue.']")).to_have_count(
        2, timeout=SLOW)
    await expect(blue.get_by_test_id("replicas")).to_have_text("2/2", timeout=SLOW)
    await shots.take(page, "two-running")

    # The shell: choose it, connect, `echo hi`, see `hi`; the exit code at the end.
    await card(running, "container", "blue.0").get_by_role("button", name="Shell").click()
    shell = page.get_by_role("dialog", name="Shell in blue.0")
    await shell.get_by_role("button", name="Connect").click()
    terminal = shell.get_by_test_id("terminal")
    await expect(terminal.locator(".xterm-rows")).to_contain_text("#", timeout=30_000)
    await page.keyboard.type("echo h''i\n")
    await expect(terminal.locator(".xterm-rows > div", has_text=re.compile(r"^hi\s*$"))
                 ).to_have_count(1, timeout=15_000)
    await shots.take(page, "shell-echo-hi")
    await page.keyboard.type("exit 3\n")
    await expect(shell.get_by_test_id("shell-ended")).to_have_text(
        "The shell exited with code 3", timeout=15_000)
    await shell.get_by_role("button", name="Close").click()

    # The nodes page (the admin may list nodes): the agent's node, Ready, in use.
    await page.get_by_role("button", name="Nodes").click()
    nodes = page.get_by_role("dialog", name="Nodes in default")
    await expect(nodes.locator("[data-testid^='node-']")).to_have_count(1)
    await expect(nodes.locator("[data-testid^='node-']")).to_contain_text("Ready")
    await shots.take(page, "nodes")
    await nodes.get_by_role("button", name="Close").click()

    # The events of the workload and its containers: the scheduler placed them.
    await blue.get_by_role("button", name="Events").click()
    events = page.get_by_role("dialog", name="Events of blue")
    await expect(events.get_by_test_id("events")).to_contain_text("Scheduled", timeout=15_000)
    await expect(events.get_by_test_id("events")).to_contain_text("container/blue.1")
    await shots.take(page, "events")
    await events.get_by_role("button", name="Close").click()

    # Logs, followed live.
    await card(running, "container", "blue.0").get_by_role("button", name="Logs").click()
    logs = page.get_by_role("dialog", name="Logs of blue.0")
    await expect(logs.get_by_test_id("logs")).to_contain_text("hello from blue",
                                                              timeout=15_000)
    await shots.take(page, "logs")
    await logs.get_by_role("button", name="Close").click()

    # Reload one: it is deleted and the workload makes a fresh one.
    before = await client.get("Container", "blue.0")
    await card(running, "container", "blue.0").get_by_role("button", name="Reload").click()

    async def fresh() -> bool:
        live, _ = await client.list("Container", zone="default", workspace="default")
        uids = {c.metadata.uid for c in live if c.container.status.phase == "Running"
                and not c.metadata.HasField("deletion_timestamp")}
        return len(uids) == 2 and before.metadata.uid not in uids

    await h.eventually(fresh, what="a fresh container in place of blue.0", within=90)
    await expect(running.locator("[data-testid^='container-blue.']")).to_have_count(
        2, timeout=SLOW)
    await expect(blue.get_by_test_id("replicas")).to_have_text("2/2", timeout=SLOW)
    await shots.take(page, "reloaded")

    # Trash one container: it goes and the workload runs one replica fewer.
    await card(running, "container", "blue.1").get_by_role("button", name="Trash").click()
    await expect(blue.get_by_test_id("replicas")).to_have_text("1/1", timeout=SLOW)
    await expect(card(page, "container", "blue.1")).to_have_count(0, timeout=SLOW)
    await shots.take(page, "trashed-one")

    # Dragging the workload onto "To run" adds a replica again.
    await blue.drag_to(page.get_by_test_id("column-toRun"))
    await expect(blue.get_by_test_id("replicas")).to_have_text("2/2", timeout=SLOW)
    await expect(running.locator("[data-testid^='container-blue.']")).to_have_count(
        2, timeout=SLOW)
    await shots.take(page, "dragged-to-run")

    # Stop: no containers, the card stays.
    await blue.get_by_role("button", name="Stop").click()
    await expect(page.locator("[data-testid^='container-blue.']")).to_have_count(
        0, timeout=SLOW)
    await expect(blue).to_contain_text("stopped")
    await expect(blue.get_by_test_id("replicas")).to_have_text("0/0")
    await shots.take(page, "stopped")

    # Edit the command (a new version), then restore the first from the versions panel.
    await blue.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("dialog", name="Edit blue")
    await editor.get_by_role("button", name="Image").click()
    await editor.get_by_label("Start command").fill("sleep 7200")
    await editor.get_by_test_id("editor-save").click()
    await expect(editor).to_have_count(0)
    await blue.get_by_role("button", name="Versions").click()
    versions = page.get_by_role("dialog", name="Versions of blue")
    await expect(versions.get_by_test_id("version-2")).to_contain_text("current",
                                                                        timeout=15_000)
    await expect(versions.get_by_test_id("version-1")).to_contain_text("hello from blue")
    await shots.take(page, "versions")
    await versions.get_by_test_id("version-1").get_by_role("button", name="Restore").click()
    await expect(versions.get_by_test_id("version-1")).to_contain_text("current",
                                                                        timeout=15_000)
    restored = await client.get("Workload", "blue")
    assert restored.workload.spec.config.cmd == 'sh -c "echo hello from blue; sleep 3600"'
    assert restored.workload.spec.stopped
    await versions.get_by_role("button", name="Close").click()

    # A YAML apply of a second workload; bad YAML first: where, and nothing applied.
    await page.get_by_test_id("apply-yaml").click()
    dialog = page.get_by_role("dialog", name="Apply YAML")
    await dialog.get_by_label("YAML").fill(
        "kind: Workload\nmetadata:\n  name: green\nspec:\n  replica:\n    count: many\n")
    await dialog.get_by_test_id("apply-submit").click()
    await expect(dialog.get_by_test_id("apply-error")).to_contain_text("line 6, column 5")
    await expect(dialog.get_by_test_id("apply-error")).to_contain_text("spec.replica.count")
    await shots.take(page, "apply-error")
    await dialog.get_by_label("YAML").fill(
        f"kind: Workload\nmetadata:\n  name: green\nspec:\n  replica:\n    count: 0\n"
        f"  image:\n    image: {h.BUSYBOX}\n  config:\n    cmd: sleep 60\n")
    await dialog.get_by_test_id("apply-submit").click()
    await expect(card(page, "workload", "green").get_by_test_id("replicas")).to_have_text(
        "0/0")
    await shots.take(page, "applied-green")

    # A change made with the client (as with doractl in another terminal) shows on the
    # open board without a reload.
    started = time.monotonic()
    [red] = codec.decode_yaml(
        f"kind: Workload\nmetadata:\n  name: red\n  zone: default\n  workspace: default\n"
        f"spec:\n  image:\n    image: {h.BUSYBOX}\n")
    await client.apply(red)
    await expect(card(page, "workload", "red")).to_be_visible(timeout=5_000)
    seen_after = time.monotonic() - started
    print(f"a change made through the client reached the open board in {seen_after:.3f}s")
    await shots.take(page, "live-change")

    # Switch workspace: another board, empty; and back.
    await page.get_by_test_id("workspace-menu").select_option("lab")
    await expect(page.get_by_role("button", name="Create the first workload")).to_be_visible()
    await expect(page.locator("[data-testid^='workload-']")).to_have_count(0)
    await shots.take(page, "workspace-lab")
    await page.get_by_test_id("workspace-menu").select_option("default")
    await expect(page.locator("[data-testid^='workload-']")).to_have_count(3)

    # A user of another workspace sees none of it.
    other = await sign_in(browser, web, token)
    await expect(other.get_by_role("button", name="Create the first workload")).to_be_visible()
    await expect(other.get_by_test_id("workspace-menu")).to_have_value("lab")
    await expect(other.locator("[data-testid^='workload-']")).to_have_count(0)
    await expect(other.get_by_role("button", name="Nodes")).to_have_count(0)
    # Their used-credits indicator: used / weekly in this zone.
    await expect(other.get_by_test_id("credits")).to_have_text(re.compile(r"Credits \d+\.\d / 500"),
                                                             timeout=15_000)
    await shots.take(other, "other-workspace")
    # Nor through the API with the page's token: the apiserver refuses it.
    async with httpx.AsyncClient(base_url=web.url,
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        response = await api.get("/api/objects/workloads",
                                 params={"zone": "default", "workspace": "default"})
        assert response.status_code == 403, response.text
    no_page_errors(other)
    await other.get_by_role("button", name="Sign out").click()
    await expect(other.get_by_label("Token")).to_be_visible()


async def other_users_token(client: Client) -> str:
    """A user bound to the workspace ``lab`` only, with the seeds' user role."""
    seeds = ROOT / "tests" / "data" / "seeds"
    for obj in codec.decode_yaml((seeds / "004-04-role.yaml").read_text()):
        await client.apply(obj)
    await client.apply(objects.new("Workspace", "lab"))
    [user] = codec.decode_yaml(
        "kind: User\nmetadata:\n  name: ada\nspec:\n  default:\n    workspace: lab\n"
        "    zone: default\n  resources:\n    - kind: All\n      zone: default\n"
        "      workspace: lab\n      role: user\n  credits:\n    - zone: default\n"
        "      weekly: 500\n")
    await client.apply(user)
    token, _ = await client.create_token("ada", "lab", "1")
    await asyncio.sleep(0)
    return token


async def test_the_board_reconnects_and_resumes_after_dora_web_restarts(
        browser: Browser, apiserver: APIServer, client: Client, admin_token: str,
        tmp_path: Path) -> None:
    """A dropped connection: the page's watches reconnect with Last-Event-ID and catch
    up on what changed meanwhile, each change once, without a reload."""
    if not (DIST / "index.html").is_file():
        missing(f"the web app is not built in {DIST}: run hack/web-build.sh")
    shots = Shots("reconnect")
    log = tmp_path / "dora-web.log"

    def workload(name: str, replicas: int = 0) -> Any:
        [obj] = codec.decode_yaml(
            f"kind: Workload\nmetadata:\n  name: {name}\n  zone: default\n"
            f"  workspace: default\nspec:\n  replica:\n    count: {replicas}\n"
            f"  image:\n    image: {h.BUSYBOX}\n")
        return obj

    await client.apply(workload("before"))
    with running_gateway(apiserver.port, log) as first:
        page = await sign_in(browser, first, admin_token)
        await expect(card(page, "workload", "before")).to_be_visible()
        port = first.port
    # dora-web is gone: the page's streams dropped. Changes go on meanwhile.
    await client.apply(workload("during"))
    await client.apply(workload("before", replicas=3))
    await client.delete("Workload", "before")
    await client.apply(workload("before", replicas=2))
    with running_gateway(apiserver.port, log, port=port):
        await expect(card(page, "workload", "during")).to_be_visible(timeout=20_000)
        await expect(card(page, "workload", "before").get_by_test_id("replicas")
                     ).to_have_text("0/2", timeout=20_000)
        await client.apply(workload("after"))
        await expect(card(page, "workload", "after")).to_be_visible(timeout=5_000)
        await expect(page.locator("[data-testid^='workload-']")).to_have_count(3)
        await shots.take(page, "resumed")
    no_page_errors(page)
