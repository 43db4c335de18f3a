"""Pause and Resume are their own verbs: seed 001's user role, applied as written,
lets its user pause and resume workloads and containers; a role without them does
not, even with Apply; and a refusal writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dora.api import codec, errors, objects
from dora.api.client import ApplyResult, Client
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
from tests.integration.test_ctl_support import Ctl

SEEDS = Path(__file__).parent.parent / "data" / "seeds"
ZONE, OWN = "dc-rov-01", "amedeo.setti"


def seed(name: str) -> list[object_pb2.Object]:
    return codec.decode_yaml((SEEDS / name).read_text(), source=name)


def workload(name: str) -> object_pb2.Object:
    return codec.from_dict({
        "kind": "Workload", "metadata": {"name": name, "zone": ZONE, "workspace": OWN},
        "spec": {"image": {"image": "dora/busybox"}, "config": {"cmd": "sleep 600"}},
    })


@pytest.fixture
async def users(client: Client, apiserver: APIServer) -> AsyncIterator[tuple[Client, Client]]:
    """Seed 001's zone, workspace, user role and user; and a user ``applier`` whose
    role has Apply and Get on Workload and Container, but not Pause or Resume."""
    for name in ("001-07-zone.yaml", "001-06-workspace.yaml", "001-08-role.yaml",
                 "001-09-user.yaml"):
        for obj in seed(name):
            await client.apply(obj)
    await client.apply(objects.new("Workspace", "datasets"))
    await client.apply(codec.from_dict({
        "kind": "Role", "metadata": {"name": "applier"},
        "spec": {"permission": {"Workload": ["Apply", "Get"], "Container": ["Apply", "Get"]}},
    }))
    await client.apply(codec.from_dict({
        "kind": "User", "metadata": {"name": "applier"},
        "spec": {"default": {"zone": ZONE, "workspace": OWN},
                 "resources": [{"kind": "All", "zone": ZONE, "workspace": OWN,
                                "role": "applier"}]},
    }))
    own_token, _ = await client.create_token(OWN, OWN, "1")
    applier_token, _ = await client.create_token("applier", OWN, "1")
    target = f"127.0.0.1:{apiserver.port}"
    async with Client(target, token=own_token) as own, Client(
            target, token=applier_token) as applier:
        yield own, applier


async def test_the_seed_user_role_pauses_and_resumes_a_role_without_the_verbs_cannot(
        client: Client, users: tuple[Client, Client]) -> None:
    own, applier = users
    stored, _ = await own.apply(workload("train"))
    container = objects.new("Container", "train.0", zone=ZONE, workspace=OWN)
    container.container.spec.workload = "train"
    container.container.spec.template.CopyFrom(stored.workload.spec)
    container.metadata.owner_references.add(kind="Workload", name="train",
                                            uid=stored.metadata.uid, controller=True)
    await client.apply(container)

    for kind, name in (("Workload", "train"), ("Container", "train.0")):
        before = await client.get(kind, name, zone=ZONE, workspace=OWN)
        for paused, verb in ((True, "Pause"), (False, "Resume")):
            with pytest.raises(errors.Forbidden, match=verb):
                await applier.set_paused(kind, name, paused=paused)
        after = await client.get(kind, name, zone=ZONE, workspace=OWN)
        assert after.metadata.resource_version == before.metadata.resource_version

    # The user's own defaults (zone dc-rov-01, workspace amedeo.setti) scope the call.
    paused, changed = await own.set_paused("Workload", "train", paused=True)
    assert paused.workload.spec.paused and changed == [f"{OWN}/train.0"]
    got = await own.get("Container", "train.0")
    assert got.container.spec.paused
    # Apply by the user with Apply alone neither thaws it nor counts as a change of spec.
    _, result = await applier.apply(workload("train"))
    assert (await own.get("Workload", "train")).workload.spec.paused
    assert result == ApplyResult.UNCHANGED
    resumed, _ = await own.set_paused("Container", "train.0", paused=False)
    assert not resumed.container.spec.paused
    resumed, changed = await own.set_paused("Workload", "train", paused=False)
    assert not resumed.workload.spec.paused and changed == []
    with pytest.raises(errors.NotFound):
        await own.set_paused("Workload", "nope", paused=True)


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")


WEB = """\
kind: Workload
metadata: {name: NAME}
spec:
  image: {image: dora/busybox}
  config: {cmd: /bin/sh}
  stopped: STOPPED
"""


@pytest.mark.usefixtures("default_scope")
async def test_doractl_pause_and_resume(ctl: Ctl, client: Client) -> None:
    await ctl.ok("apply", "-f", "-", input=WEB.replace("NAME", "web").replace("STOPPED", "false"))
    container = objects.new("Container", "web.0", zone="default", workspace="default")
    container.container.spec.workload = "web"
    container.container.spec.template.image.image = "dora/busybox"
    stored = await client.get("Workload", "web")
    container.metadata.owner_references.add(kind="Workload", name="web",
                                            uid=stored.metadata.uid, controller=True)
    await client.apply(container)
    paused = await ctl.ok("pause", "workload", "web")
    assert paused.out == "workload/web paused (1 container)\n"
    assert "Paused" in (await ctl.ok("get", "wk", "web")).out
    assert (await client.get("Container", "web.0")).container.spec.paused
    resumed = await ctl.ok("resume", "container", "web.0")
    assert resumed.out == "container/web.0 resumed\n"
    assert not (await client.get("Container", "web.0")).container.spec.paused
    await ctl.ok("apply", "-f", "-", input=WEB.replace("NAME", "idle").replace("STOPPED", "true"))
    refused = await ctl("pause", "workload", "idle")
    assert refused.code == 1
    assert "workload idle is stopped: nothing runs to pause (start it first)" in refused.err
    assert not (await client.get("Workload", "idle")).workload.spec.paused
    wrong = await ctl("pause", "volume", "data")
    assert wrong.code == 2 and "only workloads and containers have this verb" in wrong.err
