"""Admission bounds through the real apiserver: a refusal names the field and writes
nothing; privileged nodePorts need a verb; a workspace holds a bounded number of
Containers, Workloads and Tasks, a user a bounded number of Workloads, and a full
workspace can still change and shrink."""

from __future__ import annotations

import asyncio

import pytest

from dora.api import codec, errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver.admission import Limits
from dora.apiserver.server import APIServer, Config
from dora.apiserver.storage import Etcd
from dora.apiserver.watchcache import KindCache
from tests.integration.etcd import EtcdProcess
from tests.integration.test_auth import OTHER, OWN, ZONE, lab, user_client, workload

__all__ = ["lab", "user_client"]  # fixtures, used by name

QUOTA = 4
PER_USER = 2


@pytest.fixture
def apiserver_config(etcd: Etcd, etcd_process: EtcdProcess) -> Config:
    return Config(
        etcd_endpoints=[etcd_process.endpoint], listen="127.0.0.1:0",
        bookmark_every=0.5, progress_every=0.2,
        bounds=Limits(max_objects_per_workspace=QUOTA, max_workloads_per_user=PER_USER,
                      max_replicas=50),
    )


async def absent(client: Client, name: str, workspace: str = OWN) -> None:
    with pytest.raises(errors.NotFound):
        await client.get("Workload", name, zone=ZONE, workspace=workspace)


@pytest.mark.parametrize(("spec", "field"), [
    ({"replica": {"count": 1_000_000_000}}, "spec.replica.count"),
    ({"replica": {"count": 51}}, "spec.replica.count"),
    ({"config": {"shmSize": 10**18}}, "spec.config.shmSize"),
    ({"selectors": {"cpu": {"count": 1, "memory": 2**60}}}, "spec.selectors.cpu.memory"),
    ({"image": {"image": "dora/busy\0box"}}, "spec.image.image"),
    ({"network": {"mode": "bridge", "ports": [{"port": 80, "nodePort": 70000}]}},
     "spec.network.ports[0].nodePort"),
])
async def test_a_spec_beyond_a_bound_is_invalid_and_writes_nothing(
        lab: Client, user_client: Client, spec: dict[str, object], field: str) -> None:
    with pytest.raises(errors.Invalid) as refused:
        await user_client.apply(workload("big", OWN, **spec))
    assert [v.field for v in refused.value.violations] == [field]
    await absent(lab, "big")


async def test_a_name_with_a_control_character_is_invalid(user_client: Client) -> None:
    for name in ("a\0b", "a\nb", "a\x1bb"):
        with pytest.raises(errors.Invalid) as refused:
            await user_client.apply(workload(name, OWN))
        assert [v.field for v in refused.value.violations] == ["metadata.name"]


@pytest.mark.parametrize("port", [22, 80, 1023])
async def test_a_privileged_node_port_needs_the_verb(lab: Client, user_client: Client,
                                                     port: int) -> None:
    ports = {"mode": "bridge", "ports": [{"port": 8080, "nodePort": 25000},
                                         {"port": 22, "nodePort": port}]}
    with pytest.raises(errors.Forbidden, match="PrivilegedPort") as denied:
        await user_client.apply(workload("ssh", OWN, network=ports))
    assert [v.field for v in denied.value.violations] == ["spec.network.ports[1].nodePort"]
    await absent(lab, "ssh")
    # A Container of the user's, with the port in its template, is refused too.
    container = codec.from_dict({"kind": "Container", "metadata": {
        "name": "ssh.0", "zone": ZONE, "workspace": OWN}, "spec": {
        "workload": "ssh", "template": {"image": {"image": "x"}, "network": ports}}})
    with pytest.raises(errors.Forbidden, match="PrivilegedPort") as denied:
        await user_client.apply(container)
    assert [v.field for v in denied.value.violations] == [
        "spec.template.network.ports[1].nodePort"]
    # The admin's All includes PrivilegedPort; a port from the floor up needs nothing.
    await lab.apply(workload("ssh", OWN, network=ports))
    await user_client.apply(workload("web", OWN, network={
        "mode": "bridge", "ports": [{"port": 80, "nodePort": 1024}]}))


async def test_a_priority_above_0_needs_the_verb(lab: Client, user_client: Client) -> None:
    with pytest.raises(errors.Forbidden, match="verb Priority") as denied:
        await user_client.apply(workload("urgent", OWN, priority=10))
    assert [v.field for v in denied.value.violations] == ["spec.priority"]
    await absent(lab, "urgent")
    with pytest.raises(errors.Invalid) as refused:
        await lab.apply(workload("urgent", OWN, priority=101))
    assert [v.field for v in refused.value.violations] == ["spec.priority"]
    # Lower than the default needs nothing; the admin's All includes Priority.
    await user_client.apply(workload("patient", OWN, priority=-10))
    await lab.apply(workload("urgent", OWN, priority=100))


async def settled(cache: KindCache, count: int, workspace: str) -> None:
    """Wait until the apiserver's watch cache holds ``count`` objects in ``workspace``."""
    async with asyncio.timeout(5):
        while cache.count(ZONE, workspace) != count:  # noqa: ASYNC110 - polls the cache
            await asyncio.sleep(0.02)


def container(name: str, workspace: str) -> object_pb2.Object:
    obj = objects.new("Container", name, zone=ZONE, workspace=workspace)
    obj.container.spec.workload = name.partition(".")[0]
    obj.container.spec.template.image.image = "x"
    return obj


async def test_a_full_workspace_refuses_creates_but_not_changes_or_deletes(
        lab: Client, apiserver: APIServer) -> None:
    workloads, containers = apiserver.cache["Workload"], apiserver.cache["Container"]
    # OTHER is nobody's own workspace: only the workspace's count applies.
    for index in range(2):
        await lab.apply(workload(f"w{index}", OTHER))
        await settled(workloads, index + 1, OTHER)
    for index in range(QUOTA - 2):
        await lab.apply(container(f"w0.{index}", OTHER))
        await settled(containers, index + 1, OTHER)
    for dry_run in (True, False):
        with pytest.raises(errors.Exhausted, match="--max-objects-per-workspace") as full:
            await lab.apply(workload("one-more", OTHER), dry_run=dry_run)
        assert f"holds {QUOTA} Containers, Workloads and Tasks; the limit is {QUOTA}" in str(
            full.value)
    await absent(lab, "one-more", OTHER)
    # Containers count with Workloads: the admin's (the controllers') are refused too.
    with pytest.raises(errors.Exhausted):
        await lab.apply(container("w0.9", OTHER))
    # Changing what exists (scaling down, stopping) is never refused.
    await lab.apply(workload("w0", OTHER, replica={"count": 0}))
    stored = await lab.get("Workload", "w0", zone=ZONE, workspace=OTHER)
    assert stored.workload.spec.replica.count == 0
    # Another workspace has its own count.
    await lab.apply(workload("elsewhere", "datasets"))
    # A delete makes room again.
    await lab.delete("Workload", "w1", zone=ZONE, workspace=OTHER)
    await settled(workloads, 1, OTHER)
    await lab.apply(workload("one-more", OTHER))


async def test_a_user_has_a_bounded_number_of_workloads(
        lab: Client, user_client: Client, apiserver: APIServer) -> None:
    cache = apiserver.cache["Workload"]
    for index in range(PER_USER):
        await user_client.apply(workload(f"mine{index}", OWN))
        await settled(cache, index + 1, OWN)
    with pytest.raises(errors.Exhausted, match="--max-workloads-per-user") as full:
        await user_client.apply(workload("one-more", OWN))
    assert f"user 'amedeo.setti' has {PER_USER} Workloads" in str(full.value)
    # The admin creating one in the user's workspace counts for the user too.
    with pytest.raises(errors.Exhausted, match="--max-workloads-per-user"):
        await lab.apply(workload("one-more", OWN))
    await absent(lab, "one-more")
    # Containers are not Workloads: the workspace still has room for them.
    await lab.apply(container("mine0.0", OWN))
    # A shared workspace counts for nobody's.
    for index in range(PER_USER + 1):
        await lab.apply(workload(f"shared{index}", "datasets"))
    await user_client.apply(workload("mine0", OWN, replica={"count": 0}))
    await user_client.delete("Workload", "mine1", zone=ZONE, workspace=OWN)
    await settled(cache, PER_USER - 1, OWN)
    await user_client.apply(workload("one-more", OWN))
