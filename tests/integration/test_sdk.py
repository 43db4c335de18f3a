"""The Python SDK (``dora.Client``, ``dora.AsyncClient``) against the real apiserver.

The apiserver runs on the test's event loop, so the synchronous client is called
from another thread (``asyncio.to_thread``): a blocking call on the test's loop
would stop the server it waits for. That thread has no loop; the Jupyter case (a
thread whose own loop runs) has its own test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import dora
from dora.api import errors, profiles
from dora.api.client import Client as ApiClient
from dora.apiserver.server import APIServer
from tests.integration.test_ctl_get import make_container

pytestmark = pytest.mark.usefixtures("default_scope")


@pytest.fixture
def profile(apiserver: APIServer, admin_token: str, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """A doractl profile file, as ``make up`` writes one, named by ``$DORA_CONFIG``."""
    path = tmp_path / "config.yaml"
    profiles.save(profiles.Profiles(
        contexts={
            "local": profiles.Context("local", endpoint=f"127.0.0.1:{apiserver.port}",
                                      token=admin_token, zone="default",
                                      workspace="default"),
            "elsewhere": profiles.Context("elsewhere", endpoint="127.0.0.1:1"),
        },
        current_context="local",
    ), path)
    for name in ("DORA_SERVER", "DORA_TOKEN", "DORA_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DORA_CONFIG", str(path))
    return path


@pytest.fixture
def sync_client(profile: Path) -> Iterator[dora.Client]:
    client = dora.Client.from_profile()
    yield client
    client.close()


HELLO = """\
kind: Workload
metadata: {name: hello, labels: {app: hello}}
spec:
  selectors: {cpu: {product_name: All, count: 1}}
  image: {image: dora/busybox}
  config: {cmd: sleep 600}
---
kind: Workload
metadata: {name: other, labels: {app: other}}
spec:
  selectors: {cpu: {product_name: All, count: 1}}
  image: {image: dora/busybox}
"""


def test_import_dora_is_light_and_names_the_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys, dora; assert 'grpc' not in sys.modules; dora.Client; "
            "assert 'typer' not in sys.modules and 'dora.ctl' not in sys.modules; "
            "print(dora.Client.__module__, dora.AsyncClient.__module__)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.split() == ["dora.sdk.sync", "dora.sdk.aio"]


async def test_the_sync_client_applies_reads_and_changes_objects(
        sync_client: dora.Client, client: ApiClient) -> None:
    def script() -> None:
        done = sync_client.apply(HELLO)
        assert [str(d) for d in done] == ["workload/hello created", "workload/other created"]
        assert [d.result for d in sync_client.apply(HELLO)] == ["UNCHANGED", "UNCHANGED"]

        hello = sync_client.get("wk", "hello")
        assert (hello.kind, hello.name, hello.zone, hello.workspace) == (
            "Workload", "hello", "default", "default")
        assert hello.spec["config"]["cmd"] == "sleep 600"
        assert hello.labels == {"app": "hello"}
        assert "kind: Workload" in hello.to_yaml() and "\n  name: hello\n" in hello.to_yaml()
        assert hello.to_dict()["metadata"]["name"] == "hello"

        assert [w.name for w in sync_client.list("workloads", "app=hello")] == ["hello"]
        assert sorted(w.name for w in sync_client.list("Workload")) == ["hello", "other"]

        assert sync_client.scale("hello", 3).spec["replica"]["count"] == 3
        assert sync_client.stop("hello").spec["stopped"] is True
        assert "stopped" not in sync_client.start("hello").spec

        built = dora.Workload("train", image="dora/busybox", gpus=2,
                              gpu_products=["Tesla V100-SXM2-16GB"], cmd=["sh", "-c", "echo hi"],
                              env={"EPOCHS": "3"}, volumes={"data": "/data:ro"})
        applied = sync_client.apply(built)
        assert applied.result == "CREATED"
        assert applied.object.spec["selectors"]["gpu"] == {
            "product_name": ["Tesla V100-SXM2-16GB"], "count": 2}
        assert applied.object.spec["config"]["cmd"] == "sh -c 'echo hi'"
        assert applied.object.spec["config"]["env"] == [{"name": "EPOCHS", "value": "3"}]
        mount = applied.object.spec["volumes"][0]
        assert (mount["name"], mount["target"], mount["readOnly"]) == ("data", "/data", True)
        # The builder is the YAML: applying that YAML changes nothing.
        assert sync_client.apply(built.to_yaml())[0].result == "UNCHANGED"

        sync_client.delete("workload", "other")
        with pytest.raises(errors.NotFound):
            sync_client.get("workload", "other")

    await asyncio.to_thread(script)
    stored = await client.get("Workload", "hello", zone="default", workspace="default")
    assert stored.workload.spec.replica.count == 3 and not stored.workload.spec.stopped


async def test_errors_are_the_api_error_tree(sync_client: dora.Client, profile: Path) -> None:
    def script() -> None:
        with pytest.raises(errors.NotFound):
            sync_client.get("workload", "missing")
        with pytest.raises(errors.Invalid) as invalid:
            sync_client.apply({"kind": "Workload", "metadata": {"name": "x"},
                               "spec": {"replica": {"count": "many"}}})
        assert invalid.value.violations[0].field == "spec.replica.count"
        with pytest.raises(errors.Invalid, match="unknown resource type 'gadgets'"):
            sync_client.list("gadgets")
        with pytest.raises(errors.NotFound, match="context 'nope' does not exist"):
            dora.Client.from_profile("nope")
        with dora.Client.from_profile("elsewhere", timeout=2) as down, \
                pytest.raises(errors.Unavailable):
            down.list("workloads")
        with dora.Client(server=sync_client.connection.endpoint, token="wrong") as bad, \
                pytest.raises(errors.Unauthenticated):
            bad.list("workloads")

    await asyncio.to_thread(script)


async def test_the_environment_overrides_the_profile_as_for_doractl(
        profile: Path, admin_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DORA_CONTEXT", "elsewhere")
    server = profiles.resolve(profiles.load(profile), context="local").endpoint
    monkeypatch.setenv("DORA_SERVER", server)
    monkeypatch.setenv("DORA_TOKEN", admin_token)

    def script() -> str:
        with dora.Client.from_profile() as c:
            assert c.connection.context == "elsewhere"
            return c.whoami().user

    assert await asyncio.to_thread(script) == "admin"


async def test_wait_times_out_with_a_clear_error(sync_client: dora.Client) -> None:
    def script() -> None:
        with pytest.raises(dora.WaitTimeout) as missing:
            sync_client.wait("container", "ghost", "phase=Running", timeout=0.5)
        assert str(missing.value) == (
            "timed out after 0.5s waiting for container/ghost in default/default to reach "
            "phase=Running: it does not exist")
        assert isinstance(missing.value, TimeoutError)
        sync_client.apply(HELLO)
        with pytest.raises(TimeoutError, match=r"hello .* to reach condition=Available: "
                                               "it has no Available condition"):
            sync_client.wait("workload", "hello", "condition=Available", timeout=0.3)
        with pytest.raises(errors.Invalid, match=r"a Workload has no status\.phase"):
            sync_client.wait("workload", "hello", "phase=Running")
        with pytest.raises(errors.Invalid, match="cannot wait for 'runnin'"):
            sync_client.wait("container", "ghost", "runnin")

    await asyncio.to_thread(script)


async def test_wait_wakes_when_the_state_is_reached(profile: Path, client: ApiClient) -> None:
    async with dora.AsyncClient.from_profile() as sdk:
        workload = (await sdk.apply(dora.Workload("web", image="dora/busybox"))).object.proto
        waiter = asyncio.create_task(sdk.wait("container", "web-1", "phase=Running",
                                              timeout=20))
        await asyncio.sleep(0.3)  # measured: still waiting a while on
        assert not waiter.done()  # it does not exist yet: waited for
        await make_container(client, workload, "web-1")
        container = await client.get("Container", "web-1", zone="default", workspace="default")
        container.container.status.phase = "Pending"
        await client.update_status(container)
        await asyncio.sleep(0.3)  # measured: Pending does not end the wait
        assert not waiter.done()
        container = await client.get("Container", "web-1", zone="default", workspace="default")
        container.container.status.phase = "Running"
        await client.update_status(container)
        found = await asyncio.wait_for(waiter, 10)
        assert found is not None and found.phase == "Running"

        gone = asyncio.create_task(sdk.wait("container", "web-1", "delete", timeout=20))
        await asyncio.sleep(0.2)  # measured: it waits while the container is there
        await client.delete("Container", "web-1", zone="default", workspace="default")
        assert await asyncio.wait_for(gone, 10) is None


async def test_watch_yields_events_with_names_and_stops_when_left(
        sync_client: dora.Client, client: ApiClient) -> None:
    def script() -> list[tuple[str, str]]:
        sync_client.apply(HELLO)
        seen = []
        for event in sync_client.watch("workloads"):
            seen.append((event.type, event.object.name))
            if event.object.name == "other" and event.type == "ADDED":
                sync_client.scale("hello", 2)
            if event.type == "MODIFIED":
                break
        return seen

    seen = await asyncio.to_thread(script)
    assert seen == [("ADDED", "hello"), ("ADDED", "other"), ("MODIFIED", "hello")]


async def test_the_sync_client_works_in_a_thread_whose_loop_runs(profile: Path) -> None:
    """Jupyter's case: the caller's thread runs an event loop, so ``asyncio.run`` would
    refuse; the client's own loop thread serves the call."""
    result: dict[str, object] = {}

    async def notebook_cell() -> None:
        assert asyncio.get_running_loop().is_running()
        with dora.Client.from_profile() as c:
            result["applied"] = str(c.apply(dora.Workload("nb", image="dora/busybox")))
            result["names"] = [w.name for w in c.list("workloads")]

    def kernel() -> None:
        try:
            asyncio.run(notebook_cell())
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=kernel)
    thread.start()
    await asyncio.to_thread(thread.join, 30)
    assert "error" not in result, result
    assert result == {"applied": "workload/nb created", "names": ["nb"]}


async def test_the_async_client_has_the_same_methods() -> None:
    wanted = {"apply", "get", "list", "delete", "watch", "wait", "scale", "stop", "start",
              "exec", "logs", "upload", "download", "files", "whoami", "from_profile",
              "close"}
    assert wanted <= set(dir(dora.Client)) and wanted <= set(dir(dora.AsyncClient))
