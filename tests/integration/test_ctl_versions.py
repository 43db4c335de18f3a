"""doractl versions, rollback, describe's events, tokens and whoami against a real
apiserver. No controllers run here: the test writes the Workloadversions and Events
the workload controller would."""

from __future__ import annotations

from pathlib import Path

import pytest

from dora.api import conventions, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
from tests.integration.test_ctl_support import SEED_SCOPES, Ctl, table, words

pytestmark = pytest.mark.usefixtures("default_scope")

WEB = """\
kind: Workload
metadata: {name: web}
spec:
  replica: {count: 3}
  selectors: {cpu: {product_name: All, count: 1}}
  image: {image: IMAGE}
  config: {cmd: /bin/serve}
"""


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")


async def record_version(client: Client, workload: object_pb2.Object, number: int) -> None:
    """What the workload controller does for each new spec."""
    meta = workload.metadata
    version = objects.new("Workloadversion", conventions.version_name(meta.name, number),
                          zone=meta.zone, workspace=meta.workspace)
    version.metadata.owner_references.add(kind="Workload", name=meta.name, uid=meta.uid,
                                          controller=True)
    spec = version.workloadversion.spec
    spec.workload, spec.version = meta.name, number
    spec.template.CopyFrom(workload.workload.spec)
    spec.template.ClearField("replica")
    spec.template.ClearField("stopped")
    await client.apply(version)
    status = objects.new("Workload", meta.name, zone=meta.zone, workspace=meta.workspace)
    status.workload.status.current_version = number
    await client.update_status(status)


async def test_versions_and_rollback(ctl: Ctl, client: Client) -> None:
    await ctl.ok("apply", "-f", "-", input=WEB.replace("IMAGE", "ubuntu"))
    await record_version(client, await client.get("Workload", "web"), 1)
    await ctl.ok("apply", "-f", "-", input=WEB.replace("IMAGE", "debian"))
    await record_version(client, await client.get("Workload", "web"), 2)
    await ctl.ok("scale", "wk", "web", "--replicas", "5")
    listed = table(await ctl.ok("versions", "wk", "web"))
    assert [(r["CURRENT"], r["VERSION"], r["IMAGE"], r["CMD"]) for r in listed] == [
        ("", "1", "ubuntu", "/bin/serve"), ("*", "2", "debian", "/bin/serve")
    ]
    assert (await ctl.ok("versions", "wk", "web", "-o", "name")).lines == [
        "workloadversion/web.v1", "workloadversion/web.v2"
    ]
    # Without --to-version: the one before the current.
    assert (await ctl.ok("rollback", "wk", "web")).out == "workload/web rolled back to version 1\n"
    web = await client.get("Workload", "web")
    assert web.workload.spec.image.image == "ubuntu"
    assert web.workload.spec.replica.count == 5  # scaling is not a version
    again = await ctl.ok("rollback", "workload", "web", "--to-version", "1")
    assert again.out == "workload/web unchanged (it is at version 1)\n"
    missing = await ctl("rollback", "wk", "web", "--to-version", "9")
    assert (missing.code, missing.err) == (
        1, "error: workload/web has no version 9 (versions: 1, 2)\n")
    assert (await ctl("rollback", "nodes", "web")).code == 2


async def test_describe_shows_the_events(ctl: Ctl, client: Client) -> None:
    await ctl.ok("apply", "-f", "-", input=WEB.replace("IMAGE", "ubuntu"))
    web = await client.get("Workload", "web")
    event = objects.new("Event", "web.1", zone="default", workspace="default")
    spec = event.event.spec
    spec.type, spec.reason, spec.message, spec.count = "Warning", "Unschedulable", "no GPU", 1
    spec.source = "dora-controllers"
    spec.involved_object.kind, spec.involved_object.name = "Workload", "web"
    spec.involved_object.uid = web.metadata.uid
    spec.last_timestamp.GetCurrentTime()
    await client.apply(event)
    described = await ctl.ok("describe", "wk", "web")
    events = described.out.split("Events:\n")[1].splitlines()
    assert words(events[0]) == ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
    assert words(events[1])[:2] == ["Warning", "Unschedulable"]
    assert words(events[1])[-2:] == ["dora-controllers", "no GPU"]
    listed = table(await ctl.ok("get", "events"))
    assert [(r["TYPE"], r["OBJECT"], r["MESSAGE"]) for r in listed] == [
        ("Warning", "workload/web", "no GPU")
    ]


async def test_tokens_and_whoami(ctl: Ctl) -> None:
    me = table(await ctl.ok("whoami"))
    assert me[0]["USER"] == "admin" and me[0]["CONTEXT"] == "test"
    await ctl.ok("apply", "-f", "-", input=SEED_SCOPES)
    await ctl.ok("apply", "-f", "tests/data/seeds/004-01-zone-and-storage.yaml",
                 "-f", "tests/data/seeds/004-04-role.yaml",
                 "-f", "tests/data/seeds/004-05-workspace-and-user.yaml")
    created = await ctl.ok("token", "create", "amedeo.setti", "amedeo.setti", "1", "--ttl", "1h")
    token = created.out.strip()
    assert created.lines == [token] and token.startswith("dora_")
    assert created.err.startswith("token amedeo.setti/1 created, expires ")
    quiet = await ctl.ok("token", "create", "amedeo.setti", "amedeo.setti", "2", "-q")
    assert quiet.out.startswith("dora_") and quiet.err == ""
    await ctl.ok("token", "revoke", "amedeo.setti", "2")
    as_user = table(await ctl.ok("whoami", "--token", token))
    assert (as_user[0]["USER"], as_user[0]["WORKSPACE"]) == ("amedeo.setti", "amedeo.setti")
    listed = table(await ctl.ok("token", "list", "amedeo.setti"))
    assert [(r["USER"], r["ID"], r["EXPIRES"]) for r in listed] == [
        ("amedeo.setti", "1", "in 59m")
    ]
    assert (await ctl.ok("token", "revoke", "amedeo.setti", "1")).out == (
        "token amedeo.setti/1 revoked\n")
    refused = await ctl("whoami", "--token", token)
    assert refused.code == 1 and refused.err.startswith("error: ")
    unknown = await ctl("token", "create", "nobody", "x", "1")
    assert (unknown.code, unknown.err) == (
        1, "error: user 'nobody' does not exist; apply it first\n")
    assert (await ctl("token", "create", "a", "b", "1", "--ttl", "soon")).code == 2


async def test_clone_a_workspace(ctl: Ctl) -> None:
    await ctl.ok("apply", "-f", "-", input=WEB.replace("IMAGE", "ubuntu"))
    result = await ctl.ok("clone", "workspace", "default", "experiments")
    assert result.lines == ["workload/web in default/experiments created",
                            "workspace/experiments: 1 object(s) copied from default"]
    copied = table(await ctl.ok("get", "wk", "-g", "experiments"))
    assert [(r["NAME"], r["STATUS"]) for r in copied] == [("web", "Stopped")]


async def test_delete_container_scale_down_lowers_the_replica_count(
    ctl: Ctl, client: Client
) -> None:
    await ctl.ok("apply", "-f", "-", input=WEB.replace("IMAGE", "ubuntu"))
    workload = await client.get("Workload", "web")
    container = objects.new("Container", conventions.container_name("web", 1),
                            zone="default", workspace="default")
    container.container.spec.workload = "web"
    container.container.spec.template.CopyFrom(workload.workload.spec)
    container.metadata.owner_references.add(kind="Workload", name="web",
                                            uid=workload.metadata.uid, controller=True)
    await client.apply(container)

    result = await ctl.ok("delete", "container", "web.1", "--scale-down")
    assert result.out.strip() == "container/web.1 deleted"
    after = await client.get("Workload", "web")
    assert after.workload.spec.replica.count == 2
    assert after.metadata.annotations[conventions.SCALE_DOWN_ANNOTATION] == "web.1"

    refused = await ctl("delete", "workload", "web", "--scale-down")
    assert refused.code == 2 and "--scale-down is for containers" in refused.err
    assert (await client.get("Workload", "web")).workload.spec.replica.count == 2


async def test_a_token_made_for_a_node_acts_as_that_node_only(ctl: Ctl) -> None:
    await ctl.ok("apply", "-f", "tests/data/seeds/004-01-zone-and-storage.yaml",
                 "-f", "tests/data/seeds/004-02-node-role.yaml",
                 "-f", "tests/data/seeds/004-03-nodes.yaml")
    token = (await ctl.ok("token", "create", "node", "node", "agent-node1", "--node", "node1",
                          "-q")).out.strip()
    nodes = table(await ctl.ok("get", "nodes", "-z", "dora-cluster-1", "--token", token))
    assert [r["NAME"] for r in nodes] == ["node1"]
    refused = await ctl("get", "node", "node2", "-z", "dora-cluster-1", "--token", token)
    assert refused.code == 1 and "node 'node1' may only Get its own Node" in refused.err
    shared = (await ctl.ok("token", "create", "node", "node", "shared", "-q")).out.strip()
    told = await ctl("get", "containers", "-z", "dora-cluster-1", "--token", shared)
    assert told.code == 1 and "--node" in told.err
