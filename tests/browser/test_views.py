"""The web app's second round in headless Chromium, against a real cluster (etcd, the
apiserver, the controllers, an agent on the real Docker engine with its file and
log server, the Volume ``files`` of ``tests/integration/test_tasks.py``) and
``dora-web`` as its own process: Pause/Resume on the cards with the Paused phase
shown, a whole workload's logs, the editor's hardware kinds for a user who may not
read Nodes, the Volumes view (browse, upload, download) and the Tasks view
(progress, job table, a job's logs, retry and kill). Screenshots go to
``tests/browser/artifacts/views/`` (not committed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from dora.api import codec
from tests.browser.gateway import Gateway
from tests.browser.test_tutorial import (
    SLOW,
    Shots,
    browser,
    card,
    no_page_errors,
    other_users_token,
    sign_in,
    web,
)
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import Background, Controllers, admin_client
from tests.integration.test_tasks import (
    Cluster,
    agent_options,  # noqa: F401  (a fixture the cluster fixture asks for)
    apiserver_config,
    cluster,
    node,
    task,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_scope")]
__all__ = ["apiserver_config", "browser", "cluster", "node", "web"]

TALK = f"""\
kind: Workload
metadata: {{name: talk, zone: {h.ZONE}, workspace: {h.WORKSPACE}}}
spec:
  replica: {{count: 1}}
  image: {{image: {h.BUSYBOX}}}
  config: {{cmd: "sh -c 'echo hello from talk; sleep 600'"}}
  selectors: {{cpu: {{millicores: 100}}}}
"""


@pytest.fixture
async def running(cluster: Cluster) -> AsyncIterator[Cluster]:
    """Every controller the views need, on a client of their own."""
    background = Background()
    async with admin_client(cluster.apiserver, cluster.admin_token) as own:
        Controllers(own, controllers=("scheduler", "nodelifecycle", "volume", "workload",
                                      "task"), task_backoff=0.2).start(background)
        try:
            yield cluster
        finally:
            await background.close()


async def test_pause_logs_volumes_and_tasks_in_the_browser(
        browser: Browser, web: Gateway, running: Cluster, tmp_path: Path) -> None:
    cluster = running
    shots = Shots("views")
    cluster.tutorial(3, fail=(2,))
    [talk] = codec.decode_yaml(TALK)
    await cluster.client.apply(talk)
    page = await sign_in(browser, web, cluster.admin_token)
    try:
        await views(page, shots, cluster, tmp_path)
    except BaseException:
        await shots.take(page, "FAILED")
        raise
    no_page_errors(page)


async def views(page: Page, shots: Shots, cluster: Cluster, tmp_path: Path) -> None:
    # Pause and Resume: the workload card, then the Paused phase on the container card.
    workload = card(page, "workload", "talk")
    container = card(page.get_by_test_id("column-running"), "container", "talk.0")
    await expect(container.locator(".phase")).to_have_text("Running", timeout=SLOW)
    await workload.get_by_role("button", name="Pause").click()
    await expect(workload.get_by_test_id("paused")).to_be_visible()
    await expect(container.locator(".phase")).to_have_text("Paused", timeout=30_000)
    await shots.take(page, "paused")
    await container.get_by_role("button", name="Resume").click()
    await expect(container.locator(".phase")).to_have_text("Running", timeout=30_000)
    await workload.get_by_role("button", name="Resume").click()
    await expect(workload.get_by_test_id("paused")).to_have_count(0)

    # The whole workload's logs, each line prefixed with its container.
    await workload.get_by_role("button", name="Logs").click()
    logs = page.get_by_role("dialog", name="Logs of workload talk")
    await expect(logs.get_by_test_id("logs")).to_contain_text("[talk.0] hello from talk")
    await shots.take(page, "workload-logs")
    await logs.get_by_role("button", name="Close").click()

    # Volumes: browse, upload into a folder, download it back.
    await page.get_by_role("button", name="Volumes").click()
    volumes = page.get_by_role("dialog", name="Volumes")
    await volumes.get_by_role("button", name="files", exact=True).click()
    await volumes.get_by_role("button", name="my_config_files/").click()
    await expect(volumes.get_by_test_id("file-config_02.txt")).to_be_visible()
    local = tmp_path / "notes.txt"
    local.write_text("uploaded through the browser\n")
    await volumes.get_by_label("Files to upload").set_input_files(str(local))
    await expect(volumes.get_by_test_id("file-notes.txt")).to_be_visible(timeout=30_000)
    assert (cluster.files / "my_config_files" / "notes.txt").read_text() == local.read_text()
    (cluster.files / "my_config_files" / "notes.txt").unlink()  # not a job of the task
    (cluster.files / "report.txt").write_text("from the volume\n")
    await volumes.get_by_role("button", name="files:/").click()
    async with page.expect_download() as downloading:
        await volumes.get_by_test_id("file-report.txt").get_by_role(
            "button", name="Download").click()
    download = await downloading.value
    saved = tmp_path / "report.txt"
    await download.save_as(saved)
    assert saved.read_text() == "from the volume\n"
    await shots.take(page, "volumes")
    await volumes.get_by_role("button", name="Close").click()

    # Tasks: the progress, the job table, a job's logs, retry and kill.
    await cluster.client.apply(task(test_jobs=0))
    await page.get_by_role("button", name="Tasks").click()
    tasks = page.get_by_role("dialog", name="Tasks")
    row = tasks.get_by_test_id("task-tutorial")
    await expect(row.locator(".state")).to_have_text("Failed", timeout=SLOW)
    await expect(row.get_by_test_id("done")).to_have_text("2/3")
    await row.get_by_role("button", name="Jobs").click()
    jobs = tasks.get_by_test_id("jobs")
    await expect(jobs.get_by_test_id("job-2")).to_contain_text("Failed")
    await expect(jobs.get_by_test_id("job-0")).to_contain_text("Completed")
    await shots.take(page, "tasks")
    await jobs.get_by_test_id("job-1").get_by_role("button", name="Logs").click()
    job_logs = page.get_by_role("dialog", name="Logs of tutorial.j1-0")
    await expect(job_logs.get_by_test_id("logs")).to_contain_text("config_01.txt done")
    await job_logs.get_by_role("button", name="Close").click()
    await row.get_by_role("button", name="Retry").click()
    await expect(page.get_by_test_id("banner")).to_contain_text("task/tutorial retried")
    attempts = jobs.get_by_test_id("job-2").locator("td").nth(3)
    await expect(attempts).to_have_text("2", timeout=SLOW)
    assert (await cluster.client.get("Task", "tutorial", zone=h.ZONE,
                                     workspace=h.WORKSPACE)).task.spec.retry == 1
    await row.get_by_role("button", name="Kill").click()
    await expect(page.get_by_test_id("banner")).to_contain_text("task/tutorial killed")
    await expect(row.locator(".state")).to_have_text("Killed", timeout=SLOW)
    await shots.take(page, "task-killed")


async def test_the_editor_offers_the_devices_kinds_to_a_user_who_cannot_read_nodes(
        browser: Browser, web: Gateway, cluster: Cluster) -> None:
    client = cluster.client
    token = await other_users_token(client)
    node = await client.get("Node", cluster.node, zone=h.ZONE)
    product = node.node.status.cpu.product_name
    assert product
    page = await sign_in(browser, web, token)
    await expect(page.get_by_role("button", name="Nodes")).to_have_count(0)
    await page.get_by_test_id("new-workload").click()
    editor = page.get_by_role("dialog", name="New workload")
    await editor.get_by_role("button", name="Hardware").click()
    await expect(editor.get_by_label(product, exact=True)).to_be_visible()
    await Shots("devices").take(page, "editor-kinds")
    no_page_errors(page)
