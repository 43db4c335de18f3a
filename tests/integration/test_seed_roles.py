"""The seed ``user`` role, verbatim, means what it says (seed 001's role file).

Each of its verbs beyond Apply/Get/Delete is tried with the seed role and refused
for a user whose role lacks it: ``Workload/Container: Event``, ``Workload:
Version``, ``Project`` (a workspace), ``CPU/GPU: Get`` (the zone's devices),
``Workspace: Clone`` (atomic, the bindings copied); and a user sees the zones and
workspaces they are bound in, never others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dora.api import codec, errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer

SEEDS = Path(__file__).parent.parent / "data" / "seeds"
ZONE = "dora-cluster-1"
OWN, OTHER, PLAIN = "amedeo.setti", "other", "plain.user"
EXTRA_VERBS = {"Event", "Version", "Clone"}


def seed(name: str) -> list[object_pb2.Object]:
    return codec.decode_yaml((SEEDS / name).read_text(), source=name)


def restricted_role() -> object_pb2.Object:
    """The seed role without Event, Version, Clone, Project, CPU and GPU."""
    (role,) = seed("001-08-role.yaml")
    role.metadata.name = "restricted"
    permission = role.role.spec.permission
    for kind in ("Project", "CPU", "GPU"):
        del permission[kind]
    for verbs in permission.values():
        kept = [v for v in verbs.verbs if v not in EXTRA_VERBS]
        del verbs.verbs[:]
        verbs.verbs.extend(kept)
    return role


@pytest.fixture
async def lab(client: Client) -> Client:
    """Seed 004's zone and storage, seed 001's user role verbatim bound to amedeo.setti in
    their workspace, and plain.user bound the same way to the role without the extra
    verbs; workspaces `other` and plain.user's own."""
    for name in ("004-01-zone-and-storage.yaml", "001-08-role.yaml",
                 "004-05-workspace-and-user.yaml", "004-03-nodes.yaml"):
        for obj in seed(name):
            await client.apply(obj)
    await client.apply(restricted_role())
    for workspace in (OTHER, PLAIN):
        await client.apply(objects.new("Workspace", workspace))
    await client.apply(codec.from_dict({
        "kind": "User", "metadata": {"name": PLAIN},
        "spec": {"default": {"zone": ZONE, "workspace": PLAIN},
                 "resources": [{"kind": "All", "zone": ZONE, "workspace": PLAIN,
                                "role": "restricted"}]},
    }))
    await client.apply(objects.new("Zone", "elsewhere"))
    return client


async def connect(lab: Client, apiserver: APIServer, user: str) -> Client:
    token, _ = await lab.create_token(user, user, "t")
    return Client(f"127.0.0.1:{apiserver.port}", token=token)


@pytest.fixture
async def seed_user(lab: Client, apiserver: APIServer) -> AsyncIterator[Client]:
    async with await connect(lab, apiserver, OWN) as c:
        yield c


@pytest.fixture
async def plain_user(lab: Client, apiserver: APIServer) -> AsyncIterator[Client]:
    async with await connect(lab, apiserver, PLAIN) as c:
        yield c


def workload(name: str, workspace: str) -> object_pb2.Object:
    return codec.from_dict({
        "kind": "Workload", "metadata": {"name": name, "zone": ZONE, "workspace": workspace},
        "spec": {"image": {"image": "dora/busybox"}, "config": {"cmd": "sleep 1"}},
    })


def event_about(kind: str, name: str, workspace: str) -> object_pb2.Object:
    event = objects.new("Event", f"{name}.e1", zone=ZONE, workspace=workspace)
    event.event.spec.reason, event.event.spec.type = "Scheduled", "Normal"
    event.event.spec.involved_object.kind = kind
    event.event.spec.involved_object.name = name
    return event


def version_of(name: str, workspace: str) -> object_pb2.Object:
    version = objects.new("Workloadversion", f"{name}.v1", zone=ZONE, workspace=workspace)
    version.workloadversion.spec.workload, version.workloadversion.spec.version = name, 1
    version.workloadversion.spec.template.CopyFrom(workload(name, workspace).workload.spec)
    return version


async def test_event_and_version_verbs_read_events_and_versions(
    lab: Client, seed_user: Client, plain_user: Client
) -> None:
    for workspace in (OWN, PLAIN):
        await lab.apply(event_about("Workload", "w", workspace))
        await lab.apply(event_about("Container", "w.0", workspace))
        await lab.apply(version_of("w", workspace))
    events, _ = await seed_user.list("Event", zone=ZONE, workspace=OWN)
    assert sorted(e.event.spec.involved_object.kind for e in events) == ["Container", "Workload"]
    got = await seed_user.get("Event", "w.e1", zone=ZONE, workspace=OWN)
    assert got.event.spec.reason == "Scheduled"
    versions, _ = await seed_user.list("Workloadversion", zone=ZONE, workspace=OWN)
    assert [v.metadata.name for v in versions] == ["w.v1"]
    for kind in ("Event", "Workloadversion"):
        with pytest.raises(errors.Forbidden, match=kind):
            await plain_user.list(kind, zone=ZONE, workspace=PLAIN)
        with pytest.raises(errors.Forbidden):  # the seed role's reach ends at its workspace
            await seed_user.list(kind, zone=ZONE, workspace=PLAIN)
    # Workload: Get still works for the restricted role: only the extra verbs went.
    await lab.apply(workload("w", PLAIN))
    await plain_user.get("Workload", "w", zone=ZONE, workspace=PLAIN)


async def test_project_verbs_act_on_the_users_own_workspace_only(
    lab: Client, seed_user: Client, plain_user: Client
) -> None:
    await lab.delete("Workspace", OWN)
    _, result = await seed_user.apply(objects.new("Workspace", OWN))   # re-created by its user
    assert result == 1  # CREATED
    assert (await seed_user.get("Workspace", OWN)).metadata.name == OWN
    for verb in ("apply", "delete"):
        with pytest.raises(errors.Forbidden, match=OTHER):
            if verb == "apply":
                await seed_user.apply(objects.new("Workspace", OTHER))
            else:
                await seed_user.delete("Workspace", OTHER)
    with pytest.raises(errors.Forbidden, match="Apply Workspace"):
        await plain_user.apply(objects.new("Workspace", PLAIN))
    with pytest.raises(errors.Forbidden, match="Delete Workspace"):
        await plain_user.delete("Workspace", PLAIN)
    await lab.get("Workspace", OTHER)  # untouched
    await seed_user.delete("Workspace", OWN)
    with pytest.raises(errors.NotFound):
        await lab.get("Workspace", OWN)


async def test_users_see_only_the_zones_and_workspaces_they_are_bound_in(
    lab: Client, seed_user: Client, plain_user: Client
) -> None:
    zones, _ = await seed_user.list("Zone")
    assert [z.metadata.name for z in zones] == [ZONE]
    workspaces, _ = await seed_user.list("Workspace")
    assert [w.metadata.name for w in workspaces] == [OWN]
    workspaces, _ = await plain_user.list("Workspace")
    assert [w.metadata.name for w in workspaces] == [PLAIN]
    await seed_user.get("Zone", ZONE)
    for kind, name in (("Zone", "elsewhere"), ("Workspace", OTHER), ("Workspace", PLAIN)):
        with pytest.raises(errors.Forbidden, match=name):
            await seed_user.get(kind, name)
    admin_sees, _ = await lab.list("Workspace")
    assert {OWN, OTHER, PLAIN} <= {w.metadata.name for w in admin_sees}


async def test_gpu_and_cpu_get_list_the_zones_devices_without_node_rights(
    lab: Client, seed_user: Client, plain_user: Client
) -> None:
    node = await lab.get("Node", "node2", zone=ZONE)
    node.node.status.phase = "Ready"
    node.node.status.cpu.product_name, node.node.status.cpu.count = "EPYC 7742", 8
    node.node.status.memory_bytes = 64 << 30
    for index in range(2):
        gpu = node.node.status.gpus.add()
        gpu.index, gpu.uuid, gpu.product_name = index, f"GPU-{index}", "Tesla V100-SXM2-16GB"
        gpu.memory_total_bytes = 16 << 30
    await lab.update_status(node)
    theirs = objects.new("Container", "t.0", zone=ZONE, workspace=OTHER)
    theirs.metadata.labels["dora.io/node"] = "node2"
    theirs.container.spec.workload, theirs.container.spec.node_name = "t", "node2"
    theirs.container.spec.gpus.add(index=1, uuid="GPU-1", product_name="Tesla V100-SXM2-16GB")
    theirs.container.spec.cpu_millicores = 1500
    theirs.container.spec.template.CopyFrom(workload("t", OTHER).workload.spec)
    await lab.apply(theirs)

    with pytest.raises(errors.Forbidden):
        await seed_user.list("Node")  # the role has nothing on Node
    gpus = await seed_user.list_devices("GPU", zone=ZONE)
    assert [(d.node, d.index, d.product_name, d.in_use) for d in gpus.items] == [
        ("node2", 0, "Tesla V100-SXM2-16GB", False), ("node2", 1, "Tesla V100-SXM2-16GB", True)]
    assert gpus.items[1].container == ""  # in use, but not by whom: another workspace's
    assert (await lab.list_devices("GPU", zone=ZONE)).items[1].container == "t.0"
    cpus = await seed_user.list_devices("cpu", zone=ZONE)
    by_node = {d.node: d for d in cpus.items}
    assert by_node["node2"].count == 8 and by_node["node2"].used_millicores == 1500
    assert set(by_node) == {"node1", "node2"}
    for kind in ("GPU", "CPU"):
        with pytest.raises(errors.Forbidden, match=f"Get {kind}"):
            await plain_user.list_devices(kind, zone=ZONE)
    with pytest.raises(errors.Invalid, match="kind"):
        await seed_user.list_devices("TPU", zone=ZONE)


async def test_clone_copies_the_workspace_and_the_users_bindings_at_once(
    lab: Client, seed_user: Client, apiserver: APIServer
) -> None:
    await seed_user.apply(workload("train", OWN))
    copied = await seed_user.clone_workspace(OWN, "amedeo.setti.copy")
    assert copied == [f"workload/train in {ZONE}/amedeo.setti.copy"]
    clone = await seed_user.get("Workload", "train", zone=ZONE, workspace="amedeo.setti.copy")
    assert clone.workload.spec.stopped
    user = await lab.get("User", OWN)
    assert {(b.workspace, b.role) for b in user.user.spec.resources} == {
        (OWN, "user"), ("amedeo.setti.copy", "user")}
    workspaces, _ = await seed_user.list("Workspace")
    assert sorted(w.metadata.name for w in workspaces) == [OWN, "amedeo.setti.copy"]
    with pytest.raises(errors.AlreadyExists, match="already exists"):
        await seed_user.clone_workspace(OWN, "amedeo.setti.copy")


async def test_a_refused_clone_writes_nothing_and_hides_what_exists(
    lab: Client, seed_user: Client, plain_user: Client
) -> None:
    await lab.apply(workload("theirs", OTHER))
    answers = []
    for source in (OTHER, "absent"):
        with pytest.raises(errors.Forbidden) as refused:
            await seed_user.clone_workspace(source, "stolen")
        answers.append(refused.value.message.replace(source, "X"))
    assert answers[0] == answers[1]  # "not yours" and "absent" answer alike
    with pytest.raises(errors.Forbidden, match="Clone"):  # no Clone in the restricted role
        await plain_user.clone_workspace(PLAIN, "plain.copy")
    # Clone granted, but not Apply of a kind it would copy: refused before any write.
    role = await lab.get("Role", "user")
    del role.role.spec.permission["Volume"]
    await lab.apply(role)
    volume = objects.new("Volume", "files", zone=ZONE, workspace=OWN)
    volume.volume.spec.storage = "dora.storage.01"
    await lab.apply(volume)
    with pytest.raises(errors.Forbidden, match="Volume"):
        await seed_user.clone_workspace(OWN, "half.copy")
    for name in ("stolen", "plain.copy", "half.copy"):
        with pytest.raises(errors.NotFound):
            await lab.get("Workspace", name)
    user = await lab.get("User", OWN)
    assert [b.workspace for b in user.user.spec.resources] == [OWN]
    with pytest.raises(errors.Invalid, match="destination"):
        await seed_user.clone_workspace(OWN, "")
