"""The gateway's second round of calls against a real cluster: etcd, the apiserver,
the controllers and an agent on the real Docker engine with its file and log
server (``tests/integration/test_tasks.py``'s cluster: Storage ``local``, Volume
``files``), and ``dora-web`` as its own process.

Pause/resume reach the Docker containers (phase Paused), a workload's logs come
from all its containers with their names, the hardware kinds come from the
Devices service, volume files go up and down streamed and never leave the
volume, and a task's job table, job logs, kill and retry work as ``doractl``'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from dora.api import codec, conventions, tasks
from dora.api.client import Client
from tests.browser.gateway import Gateway
from tests.browser.test_api import sse
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import (
    Background,
    Controllers,
    TaskGroup,
    admin_client,
    eventually,
    group,
)
from tests.integration.test_tasks import (
    Cluster,
    agent_options,  # noqa: F401  (a fixture the cluster fixture asks for)
    apiserver_config,
    cluster,
    controllers,
    get_task,
    node,
    state_is,
    task,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_scope")]
__all__ = ["apiserver_config", "cluster", "group", "node"]

SCOPE = {"zone": h.ZONE, "workspace": h.WORKSPACE}


@pytest.fixture
async def http(gateway: Gateway, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30,
                                 headers={"Authorization": f"Bearer {admin_token}"}) as c:
        yield c


async def test_volume_files_up_and_down_streamed_and_kept_inside(
        cluster: Cluster, http: httpx.AsyncClient, group: TaskGroup) -> None:
    async with controllers(cluster, group):
        await eventually(lambda: _volume_ready(cluster.client), within=30,
                         what="volume Ready")
    body = bytes(range(256)) * 9000  # 2.3 MB: several chunks both ways
    digest = hashlib.sha256(body).hexdigest()
    put = await http.put("/api/volumes/files/files/in/a%20dir/data.bin", params=SCOPE,
                         content=body, headers={"X-Content-SHA256": digest})
    assert put.status_code == 200, put.text
    assert put.json()["file"]["size"] == len(body)
    assert (cluster.files / "in" / "a dir" / "data.bin").read_bytes() == body
    listed = (await http.get("/api/volumes/files/ls", params={**SCOPE, "path": "in"})).json()
    assert [(f["name"], f["isDir"]) for f in listed["files"]] == [("a dir", True)]
    listed = (await http.get("/api/volumes/files/ls",
                             params={**SCOPE, "path": "in/a dir"})).json()
    assert [(f["name"], f["size"]) for f in listed["files"]] == [("data.bin", len(body))]
    async with http.stream("GET", "/api/volumes/files/files/in/a%20dir/data.bin",
                           params=SCOPE) as got:
        assert got.status_code == 200
        assert got.headers["x-content-sha256"] == digest
        assert int(got.headers["content-length"]) == len(body)
        assert b"".join([chunk async for chunk in got.aiter_bytes()]) == body
    # A damaged upload is refused by the agent and the old file stays.
    bad = await http.put("/api/volumes/files/files/in/a%20dir/data.bin", params=SCOPE,
                         content=b"other", headers={"X-Content-SHA256": digest})
    assert bad.status_code >= 400 and bad.json()["error"]["message"]
    assert (cluster.files / "in" / "a dir" / "data.bin").read_bytes() == body
    # Paths never leave the volume: 422 naming the field, nothing written.
    for escape in ("../../etc/passwd", "in/../../x"):
        refused = await http.put(f"/api/volumes/files/files/{escape}", params=SCOPE,
                                 content=b"x")
        assert refused.status_code in (404, 422), refused.text
        refused = await http.get("/api/volumes/files/ls", params={**SCOPE, "path": escape})
        assert refused.status_code == 422
        assert refused.json()["error"]["violations"][0]["field"] == "path"
    escaped = await http.put("/api/volumes/files/files/%2E%2E/%2E%2E/x", params=SCOPE,
                             content=b"x")
    assert escaped.status_code == 422, escaped.text
    assert not (cluster.storage / "x").exists() and not (cluster.storage.parent / "x").exists()
    missing = await http.get("/api/volumes/files/files/nope.bin", params=SCOPE)
    assert missing.status_code == 404
    no_volume = await http.get("/api/volumes/nope/ls", params=SCOPE)
    assert no_volume.status_code == 404


async def _volume_ready(client: Client) -> bool:
    got = await client.get("Volume", "files", zone=h.ZONE, workspace=h.WORKSPACE)
    return got.volume.status.phase == "Ready"


async def test_the_hardware_kinds_come_from_the_devices_service(
        cluster: Cluster, http: httpx.AsyncClient) -> None:
    async def reported() -> bool:
        got = await cluster.client.get("Node", cluster.node, zone=h.ZONE)
        return bool(got.node.status.cpu.product_name)

    await eventually(reported, within=30, what="the node's CPU reported")
    node = await cluster.client.get("Node", cluster.node, zone=h.ZONE)
    cpus = (await http.get("/api/devices/CPU", params={"zone": h.ZONE})).json()
    assert node.node.status.cpu.product_name in cpus["products"]
    assert cluster.node in {d["node"] for d in cpus["items"]}
    gpus = (await http.get("/api/devices/gpu", params={"zone": h.ZONE})).json()
    assert gpus["products"] == sorted({g.product_name for g in node.node.status.gpus})
    bad = await http.get("/api/devices/TPU")
    assert bad.status_code == 422 and bad.json()["error"]["violations"][0]["field"] == "kind"


WORKLOAD = f"""\
kind: Workload
metadata: {{name: talk}}
spec:
  replica: {{count: 2}}
  image: {{image: {h.BUSYBOX}}}
  config: {{cmd: "sh -c 'echo hello from $HOSTNAME; sleep 120'"}}
  selectors: {{cpu: {{millicores: 100}}}}
"""


async def test_pause_resume_and_the_logs_of_a_whole_workload(
        cluster: Cluster, http: httpx.AsyncClient) -> None:
    background = Background()
    async with admin_client(cluster.apiserver, cluster.admin_token) as own:
        Controllers(own, controllers=("scheduler", "nodelifecycle", "workload")).start(
            background)
        try:
            await pause_resume_and_logs(cluster, http)
        finally:
            await background.close()


async def pause_resume_and_logs(cluster: Cluster, http: httpx.AsyncClient) -> None:
    applied = await http.post("/api/apply", params=SCOPE, json={"yaml": WORKLOAD})
    assert applied.status_code == 200, applied.text

    async def phases() -> dict[str, str]:
        items, _ = await cluster.client.list(
            "Container", zone=h.ZONE, workspace=h.WORKSPACE,
            label_selector=f"{conventions.WORKLOAD_LABEL}=talk")
        return {c.metadata.name: c.container.status.phase for c in items}

    async def all_are(phase: str, count: int = 2) -> bool:
        found = await phases()
        return len(found) == count and set(found.values()) == {phase}

    await eventually(lambda: all_are("Running"), within=90, what="2 containers Running")
    # The whole workload's logs: each container's lines, prefixed with its name.
    lines: list[str] = []
    async with http.stream("GET", "/api/workloads/talk/logs", params=SCOPE) as logs:
        assert logs.status_code == 200
        async for event in sse(logs):
            if event.event == "log":
                lines.extend(codec_json(event.data)["text"].splitlines())
            if event.event == "end":
                break
    assert sorted(line.split(" hello from ")[0] for line in lines) == [
        "[talk.0]", "[talk.1]"], lines

    # Followed: a replica added later joins the stream once it starts.
    async with http.stream("GET", "/api/workloads/talk/logs",
                           params={**SCOPE, "follow": "1"}) as logs:
        assert logs.status_code == 200
        seen: set[str] = set()
        scaled = False
        async with asyncio.timeout(90):
            async for event in sse(logs):
                if event.event == "log":
                    seen.add(codec_json(event.data)["container"])
                if seen == {"talk.0", "talk.1"} and not scaled:
                    scaled = True
                    up = await http.post("/api/workloads/talk/scale", params=SCOPE,
                                         json={"replicas": 3})
                    assert up.status_code == 200, up.text
                if "talk.2" in seen:
                    break
    await eventually(lambda: all_are("Running", 3), within=60, what="3 containers Running")
    down = await http.post("/api/workloads/talk/scale", params=SCOPE, json={"replicas": 2})
    assert down.status_code == 200
    await eventually(lambda: all_are("Running"), within=60, what="2 containers again")

    paused = await http.post("/api/workloads/talk/pause", params=SCOPE)
    assert paused.status_code == 200, paused.text
    assert sorted(paused.json()["containers"]) == [f"{h.WORKSPACE}/talk.0",
                                                   f"{h.WORKSPACE}/talk.1"]
    await eventually(lambda: all_are("Paused"), within=30, what="both Paused")
    resumed = await http.post("/api/containers/talk.1/resume", params=SCOPE)
    assert resumed.status_code == 200, resumed.text
    assert not resumed.json()["object"]["spec"].get("paused")

    async def resumed_one() -> bool:
        return (await phases()).get("talk.1") == "Running"

    await eventually(resumed_one, within=30, what="talk.1 Running again")
    assert (await phases())["talk.0"] == "Paused"
    await http.post("/api/workloads/talk/resume", params=SCOPE)
    await eventually(lambda: all_are("Running"), within=30, what="both Running again")
    missing = await http.post("/api/workloads/nope/pause", params=SCOPE)
    assert missing.status_code == 404


def codec_json(text: str) -> dict[str, str]:
    data: dict[str, str] = json.loads(text)
    return data


async def test_a_tasks_job_table_job_logs_kill_and_retry(
        cluster: Cluster, http: httpx.AsyncClient, group: TaskGroup) -> None:
    cluster.tutorial(3, fail=(2,))
    async with controllers(cluster, group):
        await cluster.client.apply(task(test_jobs=0))
        await state_is(cluster.client, tasks.FAILED, within=90)
        got = (await http.get("/api/tasks/tutorial/jobs", params=SCOPE)).json()
        assert got["object"] == codec.to_dict(await get_task(cluster.client))
        assert [(j["index"], j["file"], j["state"], j["attempts"], j["container"])
                for j in got["jobs"]] == [
            (0, "config_00.txt", "Completed", 1, "tutorial.j0-0"),
            (1, "config_01.txt", "Completed", 1, "tutorial.j1-0"),
            (2, "config_02.txt", "Failed", 1, "tutorial.j2-0")]
        # The logs of one job: its latest attempt's container.
        async with http.stream("GET", "/api/containers/tutorial.j1-0/logs",
                               params=SCOPE) as logs:
            text = "".join([codec_json(e.data)["text"] async for e in sse(logs)
                            if e.event == "log"])
        assert text == f"job /task/{h.WORKSPACE}/files/my_config_files/config_01.txt done\n"
        retried = await http.post("/api/tasks/tutorial/retry", params=SCOPE)
        assert retried.status_code == 200, retried.text
        assert retried.json()["result"] == "configured"
        assert (await get_task(cluster.client)).task.spec.retry == 1

        async def second_attempt() -> bool:
            jobs = (await http.get("/api/tasks/tutorial/jobs", params=SCOPE)).json()["jobs"]
            return bool(jobs[2]["attempts"] == 2 and jobs[2]["container"] == "tutorial.j2-1")

        await eventually(second_attempt, within=60, what="job 2 run again")
        killed = await http.post("/api/tasks/tutorial/kill", params=SCOPE)
        assert killed.status_code == 200, killed.text
        assert (await get_task(cluster.client)).task.spec.killed
        assert (await http.post("/api/tasks/nope/kill", params=SCOPE)).status_code == 404


async def test_an_upload_cut_off_resumes_from_what_arrived(
        cluster: Cluster, gateway: Gateway, http: httpx.AsyncClient, admin_token: str,
        group: TaskGroup) -> None:
    """A browser's upload whose connection drops halfway: ``ls`` of the file answers
    the bytes that arrived (``partialSize``), and a PUT with ``X-Upload-Offset`` sends
    only the rest; the agent checks the joined file's sha256."""
    async with controllers(cluster, group):
        await eventually(lambda: _volume_ready(cluster.client), within=30,
                         what="volume Ready")
    body = os.urandom(6 * 1024 * 1024)
    digest = hashlib.sha256(body).hexdigest()
    url = f"/api/volumes/files/files/big.bin?zone={h.ZONE}&workspace={h.WORKSPACE}"
    # The first attempt, as a browser whose connection drops: the headers announce the
    # whole file, 4 MiB of it goes out, then the socket closes.
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write((f"PUT {url} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
                  f"Authorization: Bearer {admin_token}\r\nX-Content-SHA256: {digest}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode())
    writer.write(body[:4 * 1024 * 1024])
    await writer.drain()
    await asyncio.sleep(1.0)
    writer.close()

    async def arrived() -> int | None:
        listed = (await http.get("/api/volumes/files/ls",
                                 params={**SCOPE, "path": "big.bin"})).json()
        return listed["partialSize"] or None

    partial = await eventually(arrived, within=20, what="the partial upload")
    assert 0 < partial <= 4 * 1024 * 1024
    assert not (cluster.files / "big.bin").exists()  # only a finished file is put in place
    no_digest = await http.put("/api/volumes/files/files/big.bin", params=SCOPE,
                               content=body[partial:],
                               headers={"X-Upload-Offset": str(partial)})
    assert no_digest.status_code == 422
    assert no_digest.json()["error"]["violations"][0]["field"] == "X-Content-SHA256"
    rest = await http.put("/api/volumes/files/files/big.bin", params=SCOPE,
                          content=body[partial:],
                          headers={"X-Upload-Offset": str(partial), "X-Content-SHA256": digest})
    assert rest.status_code == 200, rest.text
    assert rest.json()["file"]["size"] == len(body)
    assert (cluster.files / "big.bin").read_bytes() == body
