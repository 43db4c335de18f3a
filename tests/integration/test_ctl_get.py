"""doractl get, describe, delete and the workload verbs against a real apiserver: kind
aliases, names, selectors, scopes, watches that print changes, and waits for deletion."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

import pytest

from dora.api import codec, errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
from tests.eventually import eventually
from tests.integration.test_ctl_support import SEED_SCOPES, Ctl, table, words

pytestmark = pytest.mark.usefixtures("default_scope")


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")


def workload_yaml(name: str, *, labels: str = "{}", replicas: int = 1,
                  workspace: str = "default") -> str:
    return f"""\
kind: Workload
metadata:
  name: {name}
  workspace: {workspace}
  labels: {labels}
spec:
  replica: {{count: {replicas}}}
  selectors: {{cpu: {{product_name: All, count: 1}}}}
  image: {{image: ubuntu}}
  config: {{cmd: /bin/bash}}
"""


async def make_workloads(ctl: Ctl) -> None:
    await ctl.ok("apply", "-f", "-", input=SEED_SCOPES)
    await ctl.ok("apply", "-f", "-", input="---\n".join([
        workload_yaml("web", labels="{app: web, tier: front}", replicas=2),
        workload_yaml("db", labels="{app: db}"),
        workload_yaml("train", workspace="amedeo.setti", replicas=0),
    ]))


async def make_container(client: Client, owner: object_pb2.Object, name: str) -> None:
    container = objects.new("Container", name, zone=owner.metadata.zone,
                            workspace=owner.metadata.workspace)
    container.metadata.owner_references.add(kind="Workload", name=owner.metadata.name,
                                             uid=owner.metadata.uid, controller=True)
    container.container.spec.workload = owner.metadata.name
    container.container.spec.version = 1
    container.container.spec.template.CopyFrom(owner.workload.spec)
    await client.apply(container)


@pytest.mark.parametrize("word", ["workloads", "workload", "Workload", "wk", "wl"])
async def test_kind_names_and_aliases(ctl: Ctl, word: str) -> None:
    await make_workloads(ctl)
    result = await ctl.ok("get", word)
    assert [row["NAME"] for row in table(result)] == ["db", "web"]


async def test_every_short_name_of_the_old_cli_lists(ctl: Ctl) -> None:
    for word in ("c", "vol", "rc", "uc", "ws", "z", "nodes", "st", "users", "roles"):
        result = await ctl("get", word)
        assert result.code == 0, (word, result)
        assert "Traceback" not in result.err


async def test_names_scopes_and_missing_objects(ctl: Ctl) -> None:
    await make_workloads(ctl)
    result = await ctl("get", "wk", "web", "nope", "db")
    assert result.code == 1
    assert [row["NAME"] for row in table(result)] == ["web", "db"]
    assert result.err == "error: workload/nope in default/default not found\n"
    # kubectl's KIND/NAME, and the workspace flag (-g is the old CLI's word).
    assert table(await ctl.ok("get", "workload/train", "-g", "amedeo.setti"))[0]["NAME"] == "train"
    assert (await ctl("get", "wk", "train")).code == 1
    everywhere = table(await ctl.ok("get", "wk", "-A"))
    assert [(r["WORKSPACE"], r["NAME"]) for r in everywhere] == [
        ("amedeo.setti", "train"), ("default", "db"), ("default", "web")
    ]
    assert everywhere[2]["REPLICAS"] == "0/2" and everywhere[2]["IMAGE"] == "ubuntu"
    nothing = await ctl.ok("get", "wk", "-z", "dc-rov-01")
    assert (nothing.out, nothing.err) == ("", "No workloads found in dc-rov-01/default.\n")


async def test_label_selectors_and_output_formats(ctl: Ctl) -> None:
    await make_workloads(ctl)
    assert (await ctl.ok("get", "wk", "-l", "app=web", "-o", "name")).out == "workload/web\n"
    assert (await ctl.ok("get", "wk", "-l", "app in (web,db),tier!=front", "-o", "name")
            ).out == "workload/db\n"
    [web] = codec.decode_yaml((await ctl.ok("get", "wk", "web", "-o", "yaml")).out)
    assert web.metadata.labels["tier"] == "front"
    assert '"name": "web"' in (await ctl.ok("get", "wk", "web", "-o", "json")).out
    wide = table(await ctl.ok("get", "wk", "web", "-o", "wide"))
    assert wide[0]["RESOURCES"] == "cpu 1xAll" and wide[0]["LABELS"] == "app=web,tier=front"
    bad = await ctl("get", "wk", "-l", "app===x")
    assert bad.code == 1 and "labelSelector" in bad.err


async def test_nodes_table_as_the_seed_shows_it(ctl: Ctl) -> None:
    await ctl.ok("apply", "-f", "tests/data/seeds/004-01-zone-and-storage.yaml",
                 "-f", "tests/data/seeds/004-03-nodes.yaml")
    result = await ctl.ok("get", "nodes", "-z", "dora-cluster-1")
    assert words(result.lines[0]) == ["KIND", "ZONE", "NAME", "ENDPOINT", "CPU", "GPU",
                                      "LASTSEEN", "STATUS", "VERSION"]
    assert words(result.lines[1]) == ["node", "dora-cluster-1", "node1",
                                      "https://10.10.10.41:3001", "-", "-", "never", "Unknown",
                                      "<none>"]


async def test_containers_and_describe_of_their_workload(ctl: Ctl, client: Client) -> None:
    await make_workloads(ctl)
    web = await client.get("Workload", "web")
    db = await client.get("Workload", "db")
    await make_container(client, web, "web-1")
    await make_container(client, web, "web-2")
    await make_container(client, db, "db-1")
    rows = table(await ctl.ok("get", "c"))
    assert [(r["NAME"], r["WORKLOAD"], r["NODE"], r["PHASE"]) for r in rows] == [
        ("db-1", "db", "<none>", "Pending"),
        ("web-1", "web", "<none>", "Pending"),
        ("web-2", "web", "<none>", "Pending"),
    ]
    described = await ctl.ok("describe", "wk", "web")
    assert described.lines[:4] == ["Name:               web", "Kind:               Workload",
                                   "Zone:               default", "Workspace:          default"]
    assert "Labels:             app=web" in described.lines
    assert "Spec:" in described.lines and "  replica:" in described.lines
    containers = described.out.split("Containers:\n")[1].split("Events:")[0].splitlines()
    assert [words(line)[0] for line in containers] == ["NAME", "web-1", "web-2"]
    assert described.lines[-1] == "Events:             <none>"
    missing = await ctl("describe", "wk", "nope")
    assert missing.code == 1 and "not found" in missing.err


async def test_get_watch_prints_changes(ctl: Ctl, client: Client) -> None:
    await make_workloads(ctl)
    watch = await ctl.start("get", "wk", "-w", "--max-events", "2", "--output-watch-events")
    assert words(await watch.line())[:2] == ["EVENT", "NAME"]
    assert words(await watch.line())[:2] == ["ADDED", "db"]
    assert words(await watch.line())[:2] == ["ADDED", "web"]
    await ctl.ok("scale", "wk", "web", "--replicas", "5")
    await ctl.ok("delete", "wk", "db")
    result = await watch.finish()
    assert result.code == 0, result
    changes = [words(line) for line in result.lines[3:]]
    assert changes[0][:2] == ["MODIFIED", "web"] and "0/5" in changes[0]
    assert changes[1][:2] == ["DELETED", "db"]


async def test_get_watch_only_skips_the_current_objects(ctl: Ctl) -> None:
    await make_workloads(ctl)
    watch = await ctl.start("get", "wk", "web", "--watch-only", "--max-events", "1",
                            "-o", "name")
    await ctl.ok("apply", "-f", "-", input=workload_yaml("db", replicas=3))
    verbs = itertools.cycle(("stop", "start"))

    async def web_changed_until_seen() -> bool:
        # The CLI opens its watch when it is ready: web changes until it has seen one.
        await ctl.ok(next(verbs), "wk", "web")
        return not watch.running()

    await eventually(web_changed_until_seen, what="the watch to see web change", every=0.2)
    result = await watch.finish()
    assert (result.code, result.out) == (0, "workload/web\n")


async def test_ctrl_c_stops_a_watch_quietly(ctl: Ctl) -> None:
    await make_workloads(ctl)
    watch = await ctl.start("get", "wk", "--watch")
    assert words(await watch.line())[0] == "NAME"
    watch.interrupt()
    result = await watch.finish()
    assert result.code == 130
    assert result.err == ""


async def test_delete_by_name_file_and_selector(ctl: Ctl, client: Client, tmp_path: Path) -> None:
    await make_workloads(ctl)
    assert (await ctl.ok("delete", "wk", "web")).out == "workload/web deleted\n"
    missing = await ctl("delete", "wk", "web", "db")
    assert (missing.code, missing.out) == (1, "workload/db deleted\n")
    assert missing.err == "error: workload/web in default/default not found\n"
    assert (await ctl.ok("delete", "wk", "web", "--ignore-not-found")).out == ""
    path = tmp_path / "train.yaml"
    path.write_text(workload_yaml("train", workspace="amedeo.setti"))
    assert (await ctl.ok("delete", "-f", str(path))).out == "workload/train deleted\n"
    await make_workloads(ctl)
    assert (await ctl.ok("delete", "wk", "-l", "app")).lines == [
        "workload/db deleted", "workload/web deleted"
    ]
    assert [w.metadata.name for w in (await client.list("Workload"))[0]] == ["train"]
    # A selector with no zone or workspace anywhere would reach them all: only with -A.
    await ctl.ok("config", "set-context", "test", "--zone", "", "--workspace", "")
    refused = await ctl("delete", "wk", "--all")
    assert refused.code == 1 and "-A for every zone and workspace" in refused.err
    assert (await ctl.ok("delete", "wk", "--all", "-A")).out == "workload/train deleted\n"


async def test_delete_wait_waits_for_finalizers(ctl: Ctl, client: Client) -> None:
    held = codec.decode_yaml(workload_yaml("held"))[0]
    held.metadata.finalizers.append("dora.ai/test")
    await client.apply(held)
    timed_out = await ctl("delete", "wk", "held", "--wait", "--timeout", "1s")
    assert timed_out.code == 1
    assert timed_out.out == "workload/held deleted\n"
    assert timed_out.err == "error: timed out after 1s waiting for workload/held to be gone\n"
    waiting = await ctl.start("delete", "wk", "held", "--wait", "--timeout", "30s")
    assert await waiting.line() == "workload/held deleted"
    await asyncio.sleep(0.5)  # measured: half a second on, it still waits
    assert waiting.running()
    current = await client.get("Workload", "held")
    assert current.metadata.HasField("deletion_timestamp")
    del current.metadata.finalizers[:]
    await client.apply(current)
    result = await waiting.finish()
    assert result.code == 0, result
    with pytest.raises(errors.NotFound):
        await client.get("Workload", "held")


async def test_scale_stop_start(ctl: Ctl, client: Client) -> None:
    await make_workloads(ctl)
    assert (await ctl.ok("scale", "workload", "web", "db", "--replicas", "3")).lines == [
        "workload/web scaled", "workload/db scaled"
    ]
    assert (await client.get("Workload", "web")).workload.spec.replica.count == 3
    assert (await ctl.ok("stop", "wk", "web")).out == "workload/web stopped\n"
    assert (await ctl.ok("stop", "wk", "web")).out == "workload/web unchanged\n"
    stopped = await client.get("Workload", "web")
    assert stopped.workload.spec.stopped
    assert stopped.workload.spec.replica.count == 3  # the definition stays
    assert table(await ctl.ok("get", "wk", "web"))[0]["STATUS"] == "Stopped"
    assert (await ctl.ok("start", "wk", "web")).out == "workload/web started\n"
    assert not (await client.get("Workload", "web")).workload.spec.stopped
    missing = await ctl("scale", "wk", "nope", "--replicas", "1")
    assert missing.code == 1 and "not found" in missing.err


async def test_scale_retries_on_conflicts(ctl: Ctl, client: Client) -> None:
    await make_workloads(ctl)

    async def churn() -> None:
        for index in range(15):
            web = await client.get("Workload", "web")
            web.metadata.labels["churn"] = str(index)
            with contextlib.suppress(errors.Conflict):  # the scale came between: go on
                await client.apply(web)

    scaled, _ = await asyncio.gather(ctl.ok("scale", "wk", "web", "--replicas", "7"), churn())
    assert scaled.out == "workload/web scaled\n"
    assert (await client.get("Workload", "web")).workload.spec.replica.count == 7


async def test_a_wrong_token_is_an_error_without_traceback(ctl: Ctl) -> None:
    result = await ctl("get", "wk", "--token", "dora_wrong")
    assert result.code == 1
    assert result.err.startswith("error: ") and "Traceback" not in result.err
