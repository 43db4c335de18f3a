"""Authentication and authorization with the seeds' roles and users, as written."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dora.api import codec, errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer, Config
from dora.apiserver.storage import Etcd

SEEDS = Path(__file__).parent.parent / "data" / "seeds"
ZONE = "dora-cluster-1"
OWN, OTHER = "amedeo.setti", "other"


def seed(name: str) -> list[object_pb2.Object]:
    return codec.decode_yaml((SEEDS / name).read_text(), source=name)


def workload(name: str, workspace: str = "", **spec: object) -> object_pb2.Object:
    """A Workload in ZONE (or in the caller's defaults when ``workspace`` is empty)."""
    metadata = {"name": name, "zone": ZONE, "workspace": workspace} if workspace else {
        "name": name}
    return codec.from_dict({
        "kind": "Workload", "metadata": metadata,
        "spec": {"image": {"image": "dora/busybox"}, "config": {"cmd": "sleep 1"}, **spec},
    })


@pytest.fixture
async def lab(client: Client) -> Client:
    """Seed 004's cluster: zone, storage, the user and node-rep roles, users amedeo.setti and
    node, plus workspaces `other` and `datasets`."""
    for name in ("004-01-zone-and-storage.yaml", "004-02-node-role.yaml", "004-04-role.yaml",
                 "004-05-workspace-and-user.yaml", "004-03-nodes.yaml"):
        for obj in seed(name):
            await client.apply(obj)
    for workspace in (OTHER, "datasets"):
        await client.apply(objects.new("Workspace", workspace))
    return client


@pytest.fixture
async def user_client(lab: Client, apiserver: APIServer) -> AsyncIterator[Client]:
    token, _ = await lab.create_token(OWN, OWN, "1")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token) as c:
        yield c


@pytest.fixture
async def node_client(lab: Client, apiserver: APIServer) -> AsyncIterator[Client]:
    """node1's agent: seed 004's node user, with a token bound to node1."""
    token, _ = await lab.create_token("node", "node", "agent-node1", node="node1")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token) as c:
        yield c


def object_for(kind: str, workspace: str) -> object_pb2.Object:
    if kind == "Workload":
        return workload("w", workspace)
    obj = objects.new(kind, "x", zone=ZONE, workspace=workspace)
    if kind == "Container":
        obj.container.spec.workload = "w"
        obj.container.spec.template.CopyFrom(workload("w").workload.spec)
    elif kind == "Volume":
        obj.volume.spec.storage = "dora.storage.01"
    elif kind == "Storage":
        obj.metadata.workspace = ""
        obj.storage.spec.mountpath, obj.storage.spec.endpoint = "/data", "10.0.0.1"
    return obj


USER_ROLE = {
    "Workload": {"Apply", "Delete", "Get"},
    "Container": {"Apply", "Delete", "Get"},
    "Volume": {"Get"},
    "Storage": {"Get"},
}


@pytest.mark.parametrize("kind", ["Workload", "Container", "Volume", "Storage", "Node"])
@pytest.mark.parametrize("verb", ["Apply", "Get", "Delete"])
@pytest.mark.parametrize("workspace", [OWN, OTHER])
async def test_permission_matrix_of_the_seed_user_role(
    lab: Client, user_client: Client, kind: str, verb: str, workspace: str
) -> None:
    obj = object_for(kind, workspace) if kind != "Node" else seed("004-03-nodes.yaml")[0]
    scoped = obj.metadata.workspace != ""
    allowed = verb in USER_ROLE.get(kind, set()) and (not scoped or workspace == OWN)
    await lab.apply(obj)
    meta = obj.metadata
    call = {
        "Apply": lambda: user_client.apply(obj),
        "Get": lambda: user_client.get(kind, meta.name, zone=meta.zone,
                                       workspace=meta.workspace),
        "Delete": lambda: user_client.delete(kind, meta.name, zone=meta.zone,
                                             workspace=meta.workspace),
    }[verb]
    if allowed:
        await call()
    else:
        with pytest.raises(errors.Forbidden) as denied:
            await call()
        assert verb in denied.value.message and kind in denied.value.message
        assert ZONE in denied.value.message
        if scoped:
            assert workspace in denied.value.message


async def test_lists_across_workspaces_show_only_what_the_user_may_get(
    lab: Client, user_client: Client
) -> None:
    await lab.apply(workload("mine", OWN))
    await lab.apply(workload("theirs", OTHER))
    items, _ = await user_client.list("Workload")
    assert [o.metadata.name for o in items] == ["mine"]
    with pytest.raises(errors.Forbidden):
        await user_client.list("Workload", zone=ZONE, workspace=OTHER)
    with pytest.raises(errors.Forbidden, match="Node"):
        await user_client.list("Node")


async def test_a_watcher_never_receives_another_workspaces_objects(
    lab: Client, user_client: Client
) -> None:
    with pytest.raises(errors.Forbidden):
        stream = user_client.watch("Workload", zone=ZONE, workspace=OTHER)
        await anext(aiter(stream))
    # From a version: what is written after it arrives, however late the stream opens.
    _, version = await user_client.list("Workload")
    stream = user_client.watch("Workload", resource_version=version, bookmarks=False)
    reader = asyncio.create_task(anext(aiter(stream)))
    await lab.apply(workload("theirs", OTHER))
    await lab.apply(workload("mine", OWN))
    event = await asyncio.wait_for(reader, 10)
    assert (event.type, event.object.metadata.name) == (WatchEvent.ADDED, "mine")


async def test_the_users_defaults_fill_in_zone_and_workspace(user_client: Client) -> None:
    stored, _ = await user_client.apply(workload("defaulted"))
    assert (stored.metadata.zone, stored.metadata.workspace) == (ZONE, OWN)
    got = await user_client.get("Workload", "defaulted")
    assert got == stored
    assert (await user_client.whoami()).user == OWN


async def test_a_volume_of_another_workspace_needs_use_there(
    lab: Client, user_client: Client
) -> None:
    for user in seed("001-09-user.yaml"):  # adds Volume/Use in `datasets`
        user.user.spec.resources[0].zone = ZONE
        await lab.apply(user)
    datasets = workload("train", OWN, volumes=[
        {"name": "imagenetpytorch", "workspace": "datasets", "target": "/imagenet"}])
    await user_client.apply(datasets)
    theirs = workload("peek", OWN, volumes=[{"name": "home", "group": OTHER}])
    with pytest.raises(errors.Forbidden, match=r"Use Volume.*other"):
        await user_client.apply(theirs)


async def test_host_network_needs_special_permission(lab: Client, user_client: Client) -> None:
    host = workload("hosty", OWN, network={"mode": "host"})
    with pytest.raises(errors.Forbidden, match="special permission") as denied:
        await user_client.apply(host)
    assert denied.value.violations[0].field == "spec.network.mode"
    with pytest.raises(errors.NotFound):
        await lab.get("Workload", "hosty", zone=ZONE, workspace=OWN)
    await lab.apply(host)


async def test_a_node_token_reports_and_reads_its_containers_and_nothing_else(
    lab: Client, node_client: Client
) -> None:
    report = objects.new("Node", "node1", zone=ZONE)
    report.node.status.phase = "Ready"
    assert (await node_client.update_status(report)).node.status.phase == "Ready"
    container = object_for("Container", OWN)
    container.metadata.finalizers.append("dora.io/agent")
    container.metadata.labels["dora.io/node"] = "node1"
    container.container.spec.node_name = "node1"
    await lab.apply(container)
    seen, _ = await node_client.list("Container", label_selector="dora.io/node=node1")
    assert [c.metadata.name for c in seen] == ["x"]
    running = objects.new("Container", "x", zone=ZONE, workspace=OWN)
    running.container.status.phase = "Running"
    await node_client.update_status(running)
    # It may drop its finalizer, and change nothing else.
    current = await node_client.get("Container", "x", zone=ZONE, workspace=OWN)
    tampered = object_pb2.Object()
    tampered.CopyFrom(current)
    tampered.container.spec.template.image.image = "evil"
    with pytest.raises(errors.Forbidden, match="only finalizers"):
        await node_client.apply(tampered)
    del current.metadata.finalizers[:]
    released, _ = await node_client.apply(current)
    assert list(released.metadata.finalizers) == []
    lease_id, _ = await node_client.grant_lease(5)
    lease = objects.new("Lease", "node.node1", zone=ZONE)
    lease.lease.spec.holder, lease.lease.spec.lease_id = "node1", lease_id
    await node_client.apply(lease, create_only=True)
    for forbidden in (
        node_client.apply(workload("w", OWN)),
        node_client.get("Workload", "w", zone=ZONE, workspace=OWN),
        node_client.delete("Container", "x", zone=ZONE, workspace=OWN),
        node_client.apply(seed("004-03-nodes.yaml")[0]),
        node_client.create_token("node", "node", "2"),
        node_client.list("User"),
    ):
        with pytest.raises(errors.Forbidden):
            await forbidden


async def test_bad_tokens_are_unauthenticated(
    lab: Client, apiserver: APIServer
) -> None:
    target = f"127.0.0.1:{apiserver.port}"
    expiring, _ = await lab.create_token(OWN, OWN, "short", ttl_seconds=1)
    revoked, _ = await lab.create_token(OWN, OWN, "revoked")
    await lab.revoke_token(OWN, "revoked")
    await asyncio.sleep(1.2)  # measured: the 1 s token expires
    for token in (None, "dora_wrong", expiring, revoked):
        async with Client(target, token=token) as client:
            with pytest.raises(errors.Unauthenticated):
                await client.get("Zone", ZONE)
    listed = await lab.list_tokens(OWN)
    assert [t.id for t in listed] == ["short"]
    with pytest.raises(errors.AlreadyExists):
        await lab.create_token(OWN, OWN, "short")
    with pytest.raises(errors.NotFound, match="nobody"):
        await lab.create_token("nobody", OWN, "1")


async def test_users_see_and_revoke_only_their_own_tokens(
    lab: Client, user_client: Client
) -> None:
    await lab.create_token("node", "node", "1")
    assert [(t.user, t.id) for t in await user_client.list_tokens()] == [(OWN, "1")]
    with pytest.raises(errors.Forbidden):
        await user_client.list_tokens("node")
    with pytest.raises(errors.Forbidden):
        await user_client.revoke_token("node", "1")
    await user_client.revoke_token(OWN, "1")
    with pytest.raises(errors.Unauthenticated):
        await user_client.whoami()


async def test_tokens_are_stored_only_as_hashes(lab: Client, etcd: Etcd,
                                                admin_token: str) -> None:
    token, _ = await lab.create_token(OWN, OWN, "secret")
    everything = await etcd.range(b"/")
    assert everything.kvs
    for kv in everything.kvs:
        for secret in (token, admin_token):
            assert secret.encode() not in kv.key and secret.encode() not in kv.value


async def test_clone_copies_definitions_stopped_never_containers(lab: Client) -> None:
    await lab.apply(workload("train", OWN, replica={"count": 2}))
    for obj in seed("004-06-volume.yaml"):
        await lab.apply(obj)
    container = object_for("Container", OWN)
    await lab.apply(container)
    copied = await lab.clone_workspace(OWN, "amedeo.setti-2")
    assert sorted(copied) == [f"volume/home in {ZONE}/amedeo.setti-2",
                              f"workload/train in {ZONE}/amedeo.setti-2"]
    clone = await lab.get("Workload", "train", zone=ZONE, workspace="amedeo.setti-2")
    assert clone.workload.spec.stopped and clone.workload.spec.replica.count == 2
    containers, _ = await lab.list("Container", workspace="amedeo.setti-2")
    assert containers == []


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for localhost and its key, made by openssl for this test."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_tls_round_trip_with_a_self_signed_certificate(
    apiserver_config: Config, self_signed: tuple[Path, Path]
) -> None:
    cert, key = self_signed
    apiserver_config.tls_cert, apiserver_config.tls_key = cert.read_bytes(), key.read_bytes()
    server = APIServer(apiserver_config)
    await server.start()
    try:
        target = f"localhost:{server.port}"
        async with Client(target, token=server.admin_token,
                          root_certificates=cert.read_bytes()) as client:
            assert (await client.whoami()).user == "admin"
        async with Client(target, token=server.admin_token, timeout=2) as plain:
            with pytest.raises(errors.Unavailable):
                await plain.whoami()
    finally:
        await server.stop(grace=0)


async def test_getone_reads_ones_own_usercredit_and_no_one_elses(
    lab: Client, apiserver: APIServer
) -> None:
    for obj in codec.decode_yaml(f"""
kind: Role
metadata: {{name: credits-only}}
spec:
  permission:
    Usercredit: [GetOne]
---
kind: User
metadata: {{name: thrifty}}
spec:
  resources:
    - {{kind: All, zone: {ZONE}, workspace: All, role: credits-only}}
""", source="test"):
        await lab.apply(obj)
    def usercredit(name: str, generation: str = "1") -> object_pb2.Object:
        obj = objects.new("Usercredit", name, zone=ZONE)
        obj.usercredit.spec.user = name
        obj.metadata.labels["generation"] = generation
        return obj

    for name in ("thrifty", OWN):
        await lab.apply(usercredit(name))
    token, _ = await lab.create_token("thrifty", "default", "1")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token) as thrifty:
        assert (await thrifty.get("Usercredit", "thrifty", zone=ZONE)).metadata.name == "thrifty"
        with pytest.raises(errors.Forbidden):
            await thrifty.get("Usercredit", OWN, zone=ZONE)
        items, version = await thrifty.list("Usercredit", zone=ZONE)
        assert [o.metadata.name for o in items] == ["thrifty"]
        assert [o.metadata.name for o in (await thrifty.list("Usercredit"))[0]] == ["thrifty"]
        stream = thrifty.watch("Usercredit", zone=ZONE, resource_version=version,
                               bookmarks=False)
        reader = asyncio.create_task(anext(aiter(stream)))
        await lab.apply(usercredit(OWN, "2"))
        await lab.apply(usercredit("thrifty", "2"))
        event = await asyncio.wait_for(reader, 10)
        assert event.object.metadata.name == "thrifty"
        with pytest.raises(errors.Forbidden):
            await thrifty.list("Workload", zone=ZONE, workspace="default")


async def test_a_zone_scoped_watch_still_sees_kinds_without_a_zone(lab: Client) -> None:
    items, version = await lab.list("User", zone=ZONE)
    assert {o.metadata.name for o in items} >= {OWN, "node"}
    stream = lab.watch("User", zone=ZONE, resource_version=version, bookmarks=False)
    reader = asyncio.create_task(anext(aiter(stream)))
    await lab.apply(objects.new("User", "newcomer"))
    event = await asyncio.wait_for(reader, 10)
    assert (event.type, event.object.metadata.name) == (WatchEvent.ADDED, "newcomer")


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_list_pages_never_reveal_that_invisible_objects_exist(
    lab: Client, user_client: Client, limit: int
) -> None:
    """Invisible Workloads before, between (in key order: workspaces aaa, datasets,
    other) and after the user's: every page is full or the last, and the last
    page has no continue token, exactly as if the invisible ones did not exist."""
    await lab.apply(objects.new("Workspace", "aaa"))
    for workspace in ("aaa", "datasets", OTHER):
        for i in range(3):
            await lab.apply(workload(f"hidden{i}", workspace))
    mine = [f"mine{i}" for i in range(4)]
    for name in mine:
        await lab.apply(workload(name, OWN))
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await user_client.list_page("Workload", limit=limit, continue_token=token)
        pages.append([o.metadata.name for o in page.items])
        token = page.continue_token
        if not token:
            break
        assert len(pages) < 10
    assert [n for p in pages for n in p] == mine
    assert [len(p) for p in pages] == [len(mine[i:i + limit])
                                       for i in range(0, len(mine), limit)]


@pytest.fixture
async def seed001(client: Client, apiserver: APIServer) -> AsyncIterator[Client]:
    """Seed 001's zone, workspace, ``user`` role and user amedeo.setti (bound to their
    workspace with ``kind: All``), another user bound the same way, and the
    Usercredits of both; yields amedeo.setti's client."""
    for name in ("001-07-zone.yaml", "001-06-workspace.yaml", "001-08-role.yaml",
                 "001-09-user.yaml"):
        for obj in seed(name):
            await client.apply(obj)
    await client.apply(objects.new("Zone", "dc-test-01"))
    await client.apply(objects.new("Workspace", "someone"))
    someone = codec.from_dict({"kind": "User", "metadata": {"name": "someone"}, "spec": {
        "resources": [{"kind": "All", "zone": "All", "workspace": "someone", "role": "user"}]}})
    await client.apply(someone)
    for zone in ("dc-rov-01", "dc-test-01"):
        for name in (OWN, "someone"):
            credit = objects.new("Usercredit", name, zone=zone)
            credit.usercredit.spec.user = name
            await client.apply(credit)
    token, _ = await client.create_token(OWN, OWN, "1")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token) as c:
        yield c


@pytest.mark.parametrize("zone", ["dc-rov-01", "dc-test-01"])
async def test_the_seed_user_role_reads_only_ones_own_usercredit_whatever_the_verb(
    client: Client, seed001: Client, zone: str
) -> None:
    own = await seed001.get("Usercredit", OWN, zone=zone)
    assert own.metadata.name == OWN
    cached = await seed001.get("Usercredit", OWN, zone=zone,
                               resource_version=own.metadata.resource_version)
    assert cached.metadata.name == OWN
    for version in (0, own.metadata.resource_version):
        with pytest.raises(errors.Forbidden):
            await seed001.get("Usercredit", "someone", zone=zone, resource_version=version)
    for listing in (seed001.list("Usercredit", zone=zone), seed001.list("Usercredit"),
                    seed001.list("Usercredit", resource_version=own.metadata.resource_version)):
        items, version = await listing
        assert {o.metadata.name for o in items} == {OWN}
    page = await seed001.list_page("Usercredit", limit=1)
    assert [o.metadata.name for o in page.items] == [OWN]
    # Watch from 0 (the current objects) and from a version (the changes).
    initial = seed001.watch("Usercredit", zone=zone, bookmarks=True)
    names = []
    async with asyncio.timeout(10):
        async for event in initial:
            if event.type == WatchEvent.BOOKMARK:
                break
            names.append(event.object.metadata.name)
    assert names == [OWN]
    await initial.aclose()  # type: ignore[attr-defined]
    changes = seed001.watch("Usercredit", resource_version=version)
    reader = asyncio.create_task(anext(aiter(changes)))
    for name in ("someone", OWN):
        credit = await client.get("Usercredit", name, zone=zone)
        credit.metadata.labels["touched"] = "yes"
        await client.apply(credit)
    event = await asyncio.wait_for(reader, 10)
    assert event.object.metadata.name == OWN
    await changes.aclose()  # type: ignore[attr-defined]
    # The admin (bound with workspace All) still reads everyone's.
    items, _ = await client.list("Usercredit", zone=zone)
    assert {o.metadata.name for o in items} == {OWN, "someone"}


def bound_container(name: str, node: str, workspace: str = OWN) -> object_pb2.Object:
    container = object_for("Container", workspace)
    container.metadata.name = name
    container.metadata.finalizers.append("dora.io/agent")
    container.metadata.labels["dora.io/node"] = node
    container.container.spec.node_name = node
    return container


async def test_a_node_token_may_not_touch_another_nodes_node_containers_or_lease(
    lab: Client, node_client: Client
) -> None:
    """NodeRestriction: node1's token against node2's Node, Containers and Lease (and
    the controllers' leader lease), in every verb it has."""
    for name, node in (("mine", "node1"), ("theirs", "node2")):
        await lab.apply(bound_container(name, node))
    await lab.apply(_renamed(object_for("Container", OWN), "unbound"))
    theirs = await lab.get("Container", "theirs", zone=ZONE, workspace=OWN)
    report = objects.new("Node", "node2", zone=ZONE)
    report.node.status.phase = "Ready"
    status = objects.new("Container", "theirs", zone=ZONE, workspace=OWN)
    status.container.status.phase, status.container.status.docker_id = "Running", "evil"
    released = object_pb2.Object()
    released.CopyFrom(theirs)
    del released.metadata.finalizers[:]
    node2_lease_id, _ = await lab.grant_lease(30)
    node2_lease = objects.new("Lease", "node.node2", zone=ZONE)
    node2_lease.lease.spec.holder, node2_lease.lease.spec.lease_id = "node2", node2_lease_id
    await lab.apply(node2_lease)
    my_lease_id, _ = await node_client.grant_lease(30)
    for refused in (
        node_client.update_status(report),
        node_client.get("Node", "node2", zone=ZONE),
        node_client.get("Container", "theirs", zone=ZONE, workspace=OWN),
        node_client.get("Container", "unbound", zone=ZONE, workspace=OWN),
        node_client.update_status(status),
        node_client.apply(released),
        node_client.get("Lease", "node.node2", zone=ZONE),
        node_client.delete("Lease", "node.node2", zone=ZONE),
        node_client.apply(_lease("node.node2", "node1", my_lease_id)),
        node_client.apply(_lease("controllers", "node1", my_lease_id)),
    ):
        with pytest.raises(errors.Forbidden, match="node1"):
            await refused
    # Its own lease name, bound to someone else's etcd lease: not its lease.
    with pytest.raises(errors.NotFound, match="of yours"):
        await node_client.apply(_lease("node.node1", "node1", node2_lease_id))
    with pytest.raises(errors.NotFound, match="of yours"):
        await node_client.revoke_lease(node2_lease_id)
    # A foreign lease kept alive reports it lost (TTL 0) and refreshes nothing.
    async for left in node_client.keep_lease_alive(node2_lease_id, every=0.1):
        assert left == 0
        break
    assert (await lab.get("Lease", "node.node2", zone=ZONE)).lease.spec.lease_id == \
        node2_lease_id
    # Lists and watches show only node1's.
    for kind, expected in (("Container", ["mine"]), ("Node", ["node1"]), ("Lease", [])):
        items, version = await node_client.list(kind, zone=ZONE)
        assert [o.metadata.name for o in items] == expected, kind
        cached, _ = await node_client.list(kind, zone=ZONE, resource_version=version)
        assert [o.metadata.name for o in cached] == expected, kind
    stream = node_client.watch("Container", zone=ZONE, bookmarks=True)
    names = []
    async with asyncio.timeout(10):
        async for event in stream:
            if event.type == WatchEvent.BOOKMARK:
                break
            names.append(event.object.metadata.name)
    assert names == ["mine"]
    await lab.apply(bound_container("later", "node2"))
    await lab.apply(bound_container("later1", "node1"))
    async with asyncio.timeout(10):
        async for event in stream:
            if event.type != WatchEvent.BOOKMARK:
                assert event.object.metadata.name == "later1"
                break
    await stream.aclose()  # type: ignore[attr-defined]
    # Its own: allowed.
    own = objects.new("Container", "mine", zone=ZONE, workspace=OWN)
    own.container.status.phase = "Running"
    await node_client.update_status(own)
    await node_client.apply(_lease("node.node1", "node1", my_lease_id))
    await node_client.revoke_lease(my_lease_id)


def _renamed(obj: object_pb2.Object, name: str) -> object_pb2.Object:
    obj.metadata.name = name
    return obj


def _lease(name: str, holder: str, lease_id: int) -> object_pb2.Object:
    lease = objects.new("Lease", name, zone=ZONE)
    lease.lease.spec.holder, lease.lease.spec.lease_id = holder, lease_id
    return lease


async def test_the_shared_node_token_reads_nodes_and_is_told_how_to_make_its_own(
    lab: Client, apiserver: APIServer
) -> None:
    """Seed 004's shared token (bound to no node) keeps reading Nodes; anything more
    is refused with the command that makes a token per node."""
    await lab.apply(bound_container("c1", "node1"))
    token, _ = await lab.create_token("node", "node", "shared")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token) as shared:
        items, _ = await shared.list("Node", zone=ZONE)
        assert {o.metadata.name for o in items} == {"node1", "node2"}
        assert (await shared.get("Node", "node2", zone=ZONE)).metadata.name == "node2"
        report = objects.new("Node", "node1", zone=ZONE)
        report.node.status.phase = "Ready"
        for refused in (
            shared.update_status(report),
            shared.get("Container", "c1", zone=ZONE, workspace=OWN),
            shared.list("Container", zone=ZONE),
            shared.grant_lease(10),
            shared.get("Volume", "v", zone=ZONE, workspace=OWN),
        ):
            with pytest.raises(errors.Forbidden, match="--node"):
                await refused
        assert (await shared.whoami()).node == ""


async def test_token_node_names_are_checked_and_reported(
    lab: Client, node_client: Client
) -> None:
    assert (await node_client.whoami()).node == "node1"
    for bad in ("a/b", "-x", "x" * 300, "a b"):
        with pytest.raises(errors.Invalid) as caught:
            await lab.create_token("node", "node", "bad", node=bad)
        assert caught.value.violations[0].field == "node"


BINDINGS = {
    "spec.nodeName": lambda c: setattr(c.container.spec, "node_name", "node1"),
    "spec.gpus": lambda c: c.container.spec.gpus.add(index=0, uuid="GPU-0"),
    "spec.cpuMillicores": lambda c: setattr(c.container.spec, "cpu_millicores", 0) or setattr(
        c.container.spec, "cpu_millicores", 4000),
    "metadata.labels[dora.io/node]": lambda c: c.metadata.labels.__setitem__(
        "dora.io/node", "node1"),
    "metadata.labels[dora.io/placement]": lambda c: c.metadata.labels.__setitem__(
        "dora.io/placement", "node1"),
}


@pytest.mark.parametrize("field", sorted(BINDINGS))
@pytest.mark.parametrize("existing", ["new", "pending", "bound"])
async def test_only_the_scheduler_writes_a_containers_binding_fields(
    lab: Client, user_client: Client, etcd: Etcd, field: str, existing: str
) -> None:
    """A user with ``Container: [Apply]`` may not set or change where a Container runs
    or what it gets (a new one, one pending, one the scheduler bound); the admin,
    who holds Bind, may. Re-applying a bound Container unchanged is fine."""
    container = object_for("Container", OWN)
    if existing == "pending":
        await lab.apply(container)
    elif existing == "bound":
        container = bound_container("x", "node2")
        container.container.spec.gpus.add(index=1, uuid="GPU-1")
        container.container.spec.cpu_millicores = 1000
        container.metadata.labels["dora.io/placement"] = "node2"
        await lab.apply(container)
        stored = await lab.get("Container", "x", zone=ZONE, workspace=OWN)
        unchanged = object_pb2.Object()
        unchanged.CopyFrom(stored)
        unchanged.metadata.resource_version = 0
        await user_client.apply(unchanged)
    attempt = object_pb2.Object()
    attempt.CopyFrom(container)
    BINDINGS[field](attempt)
    before = await etcd.revision()
    with pytest.raises(errors.Forbidden, match="Bind") as caught:
        await user_client.apply(attempt)
    assert field in caught.value.message
    assert [v.field for v in caught.value.violations] == [field]
    assert await etcd.revision() == before, "nothing written"
    await lab.apply(attempt)  # the scheduler's identity (here the admin) holds Bind


async def test_a_user_may_not_unbind_a_container_either(lab: Client, user_client: Client) -> None:
    await lab.apply(bound_container("x", "node1"))
    moved = object_for("Container", OWN)  # no node, no labels: would unbind it
    with pytest.raises(errors.Forbidden) as caught:
        await user_client.apply(moved)
    assert {v.field for v in caught.value.violations} == {
        "spec.nodeName", "metadata.labels[dora.io/node]"}
