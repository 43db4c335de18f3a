"""doractl wait, label, annotate, cordon/uncordon/drain, version and edit against the
real apiserver (and, for drain, the real controllers with two simulated agents)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

import dora
from dora.api import objects
from dora.api.client import Client
from dora.apiserver.server import APIServer
from tests.integration.controllers_harness import (
    Controllers,
    SimNode,
    TaskGroup,
    eventually,
    group,
    workload,
)
from tests.integration.test_ctl_get import make_container, workload_yaml
from tests.integration.test_ctl_support import Ctl

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")


async def get_default(client: Client, kind: str, name: str) -> objects.object_pb2.Object:
    return await client.get(kind, name, zone="default", workspace="default")


async def set_container_phase(client: Client, name: str, phase: str) -> None:
    container = await get_default(client, "Container", name)
    container.container.status.phase = phase
    await client.update_status(container)


# -- wait -------------------------------------------------------------------------------


async def test_wait_for_a_phase_a_condition_and_deletion(ctl: Ctl, client: Client) -> None:
    await ctl.ok("apply", "-f", "-", input=workload_yaml("web"))
    web = await get_default(client, "Workload", "web")

    timed_out = await ctl("wait", "container/web-1", "--for=phase=Running", "--timeout=1s")
    assert timed_out.code == 1
    assert timed_out.err.strip() == (
        "error: timed out after 1s waiting for container/web-1 in default/default to reach "
        "phase=Running: it does not exist")

    waiter = await ctl.start("wait", "c", "web-1", "--for", "phase=Running", "--timeout=30s")
    await make_container(client, web, "web-1")
    await set_container_phase(client, "web-1", "Pending")
    await asyncio.sleep(0.3)  # measured: Pending does not end the wait
    await set_container_phase(client, "web-1", "Running")
    done = await waiter.finish()
    assert (done.code, done.out) == (0, "container/web-1 condition met\n")

    pending = await ctl("wait", "wk/web", "--for=condition=Available", "--timeout=500ms")
    assert pending.code == 1 and "it has no Available condition" in pending.err

    usage = await ctl("wait", "wk/web", "--for=phase=Running")
    assert usage.code == 2 and "a Workload has no status.phase" in usage.err
    usage = await ctl("wait", "wk/web", "--for=running")
    assert usage.code == 2 and "cannot wait for 'running'" in usage.err
    usage = await ctl("wait", "wk/web")
    assert usage.code == 2 and "--for" in usage.err

    deleting = await ctl.start("wait", "container/web-1", "--for=delete", "--timeout=30s")
    await asyncio.sleep(0.3)  # measured: it waits while the container is there
    await client.delete("Container", "web-1", zone="default", workspace="default")
    done = await deleting.finish()
    assert (done.code, done.out) == (0, "container/web-1 deleted\n")


async def test_wait_for_a_task_state(ctl: Ctl, client: Client) -> None:
    task = objects.new("Task", "sweep", zone="default", workspace="default")
    spec = task.task.spec
    spec.image.image, spec.exec = "busybox", "sh j.sh -d %DATA -c %IN -o %OUT"
    spec.data.volume, spec.configs.volume, spec.output.volume = "files", "files", "files"
    spec.configs.path = "configs/"
    await client.apply(task)

    timed_out = await ctl("wait", "task/sweep", "--for=state=Completed", "--timeout=500ms")
    assert timed_out.code == 1
    assert timed_out.err.strip() == (
        "error: timed out after 0.5s waiting for task/sweep in default/default to reach "
        "state=Completed: its state is <none>")

    waiter = await ctl.start("wait", "task/sweep", "--for=state=completed", "--timeout=30s")
    for state in ("Testing", "Running", "Completed"):
        stored = await get_default(client, "Task", "sweep")
        stored.task.status.state = state
        await client.update_status(stored)
        if state != "Completed":
            await asyncio.sleep(0.5)  # measured: this state does not end the wait
            assert waiter.running(), f"the wait ended at state {state}"
    done = await waiter.finish()
    assert (done.code, done.out) == (0, "task/sweep condition met\n")

    usage = await ctl("wait", "wk/web", "--for=state=Completed")
    assert usage.code == 2 and "a Workload has no status.state" in usage.err
    usage = await ctl("wait", "task/sweep", "--for=state=")
    assert usage.code == 2 and "state=STATE" in usage.err


# -- label and annotate -------------------------------------------------------------------


async def test_label_and_annotate_set_remove_and_need_overwrite(ctl: Ctl,
                                                                 client: Client) -> None:
    await ctl.ok("apply", "-f", "-", input=workload_yaml("web", labels="{app: web, env: dev}")
                 + "---\n" + workload_yaml("db", labels="{app: db}"))

    assert (await ctl.ok("label", "wk/web", "tier=front", "env-")).out == \
        "workload/web labeled\n"
    assert dict((await get_default(client, "Workload", "web")).metadata.labels) == {
        "app": "web", "tier": "front"}
    assert (await ctl.ok("label", "wk", "web", "tier=front")).out == \
        "workload/web not labeled\n"

    refused = await ctl("label", "wk/web", "app=api")
    assert refused.code == 1
    assert refused.err.strip() == ("error: workload/web: label 'app' already has the value "
                                   "'web'; pass --overwrite to change it")
    assert (await get_default(client, "Workload", "web")).metadata.labels["app"] == "web"
    await ctl.ok("label", "wk/web", "app=api", "--overwrite")
    assert (await get_default(client, "Workload", "web")).metadata.labels["app"] == "api"

    bad = await ctl("label", "wk/web", "app=not valid")
    assert bad.code == 2 and "label value" in bad.err
    bad = await ctl("label", "wk/web", "justaword")
    assert bad.code == 2 and "give at least one KEY=VALUE or KEY-" in bad.err

    by_selector = await ctl.ok("annotate", "wk", "-l", "app in (api,db)",
                               "owner=ML team, room 4")
    assert sorted(by_selector.lines) == ["workload/db annotated", "workload/web annotated"]
    db = await get_default(client, "Workload", "db")
    assert db.metadata.annotations["owner"] == "ML team, room 4"
    await ctl.ok("annotate", "wk/db", "owner-")
    assert "owner" not in (await get_default(client, "Workload", "db")).metadata.annotations

    missing = await ctl("label", "wk/nope", "a=b")
    assert missing.code == 1 and "workload/nope" in missing.err


# -- cordon, uncordon, drain ------------------------------------------------------------


async def test_cordon_and_uncordon_toggle_scheduling(ctl: Ctl, client: Client) -> None:
    await client.apply(objects.new("Node", "n1", zone="default"))
    assert (await ctl.ok("cordon", "n1")).out == "node/n1 cordoned\n"
    assert (await client.get("Node", "n1", zone="default")).node.spec.scheduling_disabled
    assert (await ctl.ok("cordon", "node/n1")).out == "node/n1 already cordoned\n"
    assert (await ctl.ok("uncordon", "n1")).out == "node/n1 uncordoned\n"
    assert not (await client.get("Node", "n1", zone="default")).node.spec.scheduling_disabled
    missing = await ctl("cordon", "nope")
    assert missing.code == 1 and "node/nope" in missing.err
    wrong = await ctl("cordon", "workload/n1")
    assert wrong.code == 2
    await client.apply(objects.new("Node", "other", zone="default"))
    completed = await ctl(env={"_DORACTL_COMPLETE": "complete_bash",
                               "COMP_WORDS": "doractl drain n", "COMP_CWORD": "2"})
    assert completed.out.split() == ["n1"]


async def test_contexts_complete(ctl: Ctl) -> None:
    for words, cword in (("doractl --context t", "2"), ("doractl config use-context ", "3"),
                         ("doractl get wk --context ", "4")):
        completed = await ctl(env={"_DORACTL_COMPLETE": "complete_bash",
                                   "COMP_WORDS": words, "COMP_CWORD": cword})
        assert completed.out.split() == ["test"], words


async def test_drain_moves_the_containers_to_the_other_node(ctl: Ctl, client: Client,
                                                            group: TaskGroup) -> None:
    first, second = SimNode(client, "node-a"), SimNode(client, "node-b")
    await first.start(group)
    await client.apply(objects.new("Node", "node-b", zone="default"))  # not started yet
    await ctl.ok("cordon", "node-b")
    await second.start(group)  # declaring itself again resets its spec: cordon again
    await ctl.ok("cordon", "node-b")
    Controllers(client).start(group)
    await client.apply(workload("web", replicas=2))

    async def placed_on(node: str) -> list[str] | None:
        items, _ = await client.list("Container", zone="default", workspace="default")
        names = sorted(c.metadata.name for c in items
                       if c.container.spec.node_name == node
                       and c.container.status.phase == "Running"
                       and not c.metadata.HasField("deletion_timestamp"))
        return names if len(names) == 2 else None

    before = await eventually(lambda: placed_on("node-a"), what="two containers on node-a")
    await ctl.ok("uncordon", "node-b")
    drained = await ctl.ok("drain", "node-a", "--timeout=30s")
    assert drained.lines == ["node/node-a cordoned",
                             *(f"container/{name} evicted" for name in before),
                             "node/node-a drained"]
    await eventually(lambda: placed_on("node-b"), what="the containers on node-b")
    node = await client.get("Node", "node-a", zone="default")
    assert node.node.spec.scheduling_disabled


# -- version ----------------------------------------------------------------------------


async def test_version_shows_client_and_server(ctl: Ctl, apiserver: APIServer) -> None:
    shown = await ctl.ok("version")
    assert shown.lines == [f"Client Version: {dora.__version__}",
                           f"Server Version: {dora.__version__} (127.0.0.1:{apiserver.port})"]
    assert (await ctl.ok("--version")).out == f"doractl {dora.__version__}\n"
    assert (await ctl.ok("version", "--client", "--server", "127.0.0.1:1")).lines == [
        f"Client Version: {dora.__version__}"]
    unreachable = await ctl("version", "--server", "127.0.0.1:1")
    assert unreachable.code == 1 and "unavailable" in unreachable.err


# -- edit -------------------------------------------------------------------------------


EDITOR = textwrap.dedent("""\
    import os, pathlib, subprocess, sys
    path = pathlib.Path(sys.argv[1])
    state = pathlib.Path(sys.argv[0]).with_suffix(".calls")
    calls = int(state.read_text()) + 1 if state.exists() else 1
    state.write_text(str(calls))
    text = path.read_text()
    pathlib.Path(sys.argv[0]).with_suffix(f".seen{calls}").write_text(text)
    steps = os.environ["EDIT_STEPS"].split("|")
    step = steps[min(calls, len(steps)) - 1]
    if step == "same":
        pass
    elif step == "empty":
        path.write_text("")
    elif step == "conflict":  # someone scales the workload while the file is open
        subprocess.run([sys.executable, "-m", "dora.ctl", "scale", "wk", "web",
                        "--replicas", "9"], check=True, stdout=subprocess.DEVNULL)
        path.write_text(text.replace("count: 4", "count: 5"))
    else:
        old, new = step.split("=>")
        path.write_text(text.replace(old, new))
""")


async def test_edit_applies_reopens_on_a_bad_edit_and_cancels(ctl: Ctl, client: Client,
                                                               tmp_path: Path) -> None:
    await ctl.ok("apply", "-f", "-", input=workload_yaml("web", replicas=1))
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)

    def forget() -> None:
        for old in tmp_path.glob("editor.*"):
            if old != script:
                old.unlink()

    def seen_texts() -> list[str]:
        return [p.read_text() for p in sorted(tmp_path.glob("editor.seen*"))]

    async def edit(*steps: str) -> tuple[int, str, str, list[str]]:
        forget()
        result = await ctl("edit", "wk/web", env={
            "EDITOR": f"{sys.executable} {script}", "EDIT_STEPS": "|".join(steps)})
        return result.code, result.out, result.err, seen_texts()

    code, out, _, seen = await edit("count: 1=>count: 3")
    assert (code, out) == (0, "workload/web edited\n")
    assert "resourceVersion:" in seen[0] and seen[0].startswith("# Edit the object")
    stored = await get_default(client, "Workload", "web")
    assert stored.workload.spec.replica.count == 3

    # A bad edit is shown again with the error on top; the second edit fixes it.
    code, out, _, seen = await edit("count: 3=>count: many", "count: many=>count: 4")
    assert (code, out) == (0, "workload/web edited\n")
    assert len(seen) == 2 and "# error: edited file:" in seen[1]
    assert "spec.replica.count" in seen[1] and "count: many" in seen[1]
    assert (await get_default(client, "Workload", "web")).workload.spec.replica.count == 4

    # Saving the bad edit unchanged gives up with the error; nothing is written.
    version = (await get_default(client, "Workload", "web")).metadata.resource_version
    code, _, err, seen = await edit("count: 4=>count: many", "same")
    assert code == 1 and "edit abandoned" in err and "spec.replica.count" in err
    assert (await get_default(client, "Workload", "web")).metadata.resource_version == version

    code, out, _, _ = await edit("same")
    assert (code, out) == (0, "Edit cancelled, no changes made to workload/web.\n")
    code, out, _, _ = await edit("empty")
    assert code == 0 and out.startswith("Edit cancelled")

    # Another object's name is refused (and the user gives up).
    code, _, err, _ = await edit("name: web=>name: other", "same")
    assert code == 1 and "must describe workload/web" in err

    # A change made by someone else meanwhile is a conflict, not an overwrite.
    code, _, err, seen = await edit("conflict", "same")
    assert code == 1 and "edit abandoned" in err
    assert "# error:" in seen[1]
    assert (await get_default(client, "Workload", "web")).workload.spec.replica.count == 9


# -- get: jsonpath, custom-columns, --sort-by, --show-labels, -L ------------------------


async def test_get_output_templates_sorting_and_label_columns(ctl: Ctl) -> None:
    await ctl.ok("apply", "-f", "-", input="---\n".join([
        workload_yaml("web", labels="{app: web, dora.io/tier: front}", replicas=2),
        workload_yaml("db", labels="{app: db}", replicas=10),
        workload_yaml("api", labels="{app: api}", replicas=1),
    ]))

    names = await ctl.ok("get", "wk", "-o", "jsonpath={.items[*].metadata.name}",
                         "--sort-by=.metadata.name")
    assert names.out == "api db web"
    lines = await ctl.ok("get", "wk", "--sort-by", "{.spec.replica.count}", "-o",
                         'jsonpath={range .items[*]}{.metadata.name}={.spec.replica.count}'
                         '{"\\n"}{end}')
    assert lines.out == "api=1\nweb=2\ndb=10\n"
    one = await ctl.ok("get", "wk", "web", "-o", "jsonpath={.metadata.labels.app}")
    assert one.out == "web"  # one object by name: the object, not a List

    table = await ctl.ok("get", "wk", "--sort-by=.metadata.name", "-o",
                         "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replica.count,"
                         "TIER:.metadata.labels['dora.io/tier']")
    assert table.lines == ["NAME   REPLICAS   TIER", "api    1          <none>",
                           "db     10         <none>", "web    2          front"]

    labelled = await ctl.ok("get", "wk", "--sort-by=.metadata.name", "-L", "app",
                            "-L", "dora.io/tier", "--show-labels")
    header = labelled.lines[0].split()
    assert header[-3:] == ["APP", "TIER", "LABELS"]
    assert labelled.lines[3].split()[-3:] == ["web", "front", "app=web,dora.io/tier=front"]
    assert [line.split()[0] for line in labelled.lines[1:]] == ["api", "db", "web"]

    bad = await ctl("get", "wk", "-o", "jsonpath={.items[?(@.x)]}")
    assert bad.code == 2 and "is not supported" in bad.err
    bad = await ctl("get", "wk", "-o", "xml")
    assert bad.code == 2 and "unknown output format 'xml'" in bad.err
    bad = await ctl("get", "wk", "-w", "-o", "jsonpath={.x}")
    assert bad.code == 2
    # The plain formats are as before.
    assert (await ctl.ok("get", "wk", "-o", "name", "--sort-by=.metadata.name")).lines == [
        "workload/api", "workload/db", "workload/web"]


# -- apply --wait -----------------------------------------------------------------------


async def test_apply_wait_returns_once_the_workload_is_available(
        ctl: Ctl, client: Client, group: TaskGroup) -> None:
    no_nodes = await ctl("apply", "-f", "-", "--wait", "--timeout=1s",
                         input=workload_yaml("web", replicas=1))
    assert no_nodes.code == 1 and no_nodes.out == "workload/web created\n"
    assert "timed out after 1s waiting for workload/web" in no_nodes.err

    await SimNode(client, "node-a").start(group)
    Controllers(client).start(group)
    done = await ctl("apply", "-f", "-", "--wait", "--timeout=30s",
                     input=workload_yaml("web", replicas=2))
    assert (done.code, done.lines) == (0, ["workload/web configured", "workload/web available"])
    items, _ = await client.list("Container", zone="default", workspace="default")
    assert sum(c.container.status.phase == "Running" for c in items) == 2

    usage = await ctl("apply", "-f", "-", "--wait", "--dry-run=server",
                      input=workload_yaml("web"))
    assert usage.code == 2
