"""The agent reports its Node and holds the node's Lease (real etcd, apiserver, dockerd)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from dora.agent import inventory
from dora.api import conventions, errors
from dora.api.client import Client
from dora.api.v1 import object_pb2
from tests.integration import agent_harness as h
from tests.unit.test_agent_inventory import FakeDGX

pytestmark = pytest.mark.usefixtures("default_scope")


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


async def get_node(client: Client, node: str) -> object_pb2.Object:
    return await client.get("Node", node, zone=h.ZONE)


async def get_lease(client: Client, node: str) -> object_pb2.Object | None:
    try:
        return await client.get("Lease", conventions.node_lease_name(node), zone=h.ZONE)
    except errors.NotFound:
        return None


async def ready_node(client: Client, node: str) -> object_pb2.Object:
    async def probe() -> object_pb2.Object | None:
        obj = await get_node(client, node)
        return obj if obj.node.status.phase == "Ready" else None

    return await h.eventually(probe, what=f"node {node} to be Ready")


async def test_the_node_is_ready_with_its_inventory(client: Client, node: str) -> None:
    await h.declare_node(client, node)
    async with h.running_agent(client, node, nvml=FakeDGX()):
        obj = await ready_node(client, node)
    status = obj.node.status
    cpu_model, cpu_count = inventory.read_cpu()
    assert (status.cpu.product_name, status.cpu.count) == (cpu_model, cpu_count)
    assert status.memory_bytes == inventory.read_memory()
    assert len(status.gpus) == 8
    assert {g.product_name for g in status.gpus} == {"NVIDIA A100-SXM4-80GB"}
    assert len({g.uuid for g in status.gpus}) == 8
    assert status.gpus[7].memory_total_bytes == 80 * 1024**3
    assert not status.simulated_gpus
    assert status.agent_version
    seen = status.last_seen.ToDatetime(dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - seen).total_seconds()) < 30
    [ready] = status.conditions
    assert (ready.type, ready.status) == ("Ready", "True")
    assert obj.node.spec.endpoint == "127.0.0.1:3001", "the spec stays the administrator's"


async def test_simulated_gpus_are_advertised_assigned_and_never_given_to_docker(
    client: Client, docker: Any, node: str
) -> None:
    await h.declare_node(client, node)
    products = inventory.parse_simulated("2xTesla V100-SXM2-16GB")
    nvml = inventory.SimulatedNVML(products, node=node)
    async with h.running_agent(client, node, nvml=nvml, simulated=True):
        status = (await ready_node(client, node)).node.status
        assert status.simulated_gpus
        assert [g.product_name for g in status.gpus] == products
        gpu = status.gpus[1]
        train = h.bound("train.0", node)
        train.container.spec.gpus.add(index=gpu.index, uuid=gpu.uuid,
                                      product_name=gpu.product_name)
        await client.apply(train)
        running = await h.phase_of(client, "train.0", "Running")
        attrs = docker.containers.get(running.container.status.docker_id).attrs
        assert not attrs["HostConfig"].get("DeviceRequests")

        async def assigned() -> bool:
            gpus = (await get_node(client, node)).node.status.gpus
            return [g.container for g in gpus] == ["", f"{h.WORKSPACE}/train.0"]

        await h.eventually(assigned, what="GPU 1 to show its container")


async def test_without_docker_the_node_is_not_ready_and_says_why(
    client: Client, node: str, tmp_path: Any
) -> None:
    await h.declare_node(client, node)
    async with h.running_agent(client, node, wait_ready=False,
                               docker_host=f"unix://{tmp_path}/docker.sock"):

        async def not_ready() -> object_pb2.Object | None:
            obj = await get_node(client, node)
            return obj if obj.node.status.phase == "NotReady" else None

        obj = await h.eventually(not_ready, what="the node to be NotReady")
    [condition] = obj.node.status.conditions
    assert (condition.type, condition.status, condition.reason) == ("Ready", "False",
                                                                    "DockerUnavailable")
    assert "no such socket" in condition.message


async def test_an_undeclared_node_is_named_in_the_log_until_it_is_declared(
    client: Client, node: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dora.agent")
    async with h.running_agent(client, node):
        message = (f"Node {h.ZONE}/{node} is not declared; ask an administrator to apply "
                   "it (seed 004)")

        async def logged() -> bool:
            await asyncio.sleep(0)
            return message in caplog.text

        await h.eventually(logged, what="the undeclared-node message")
        await h.declare_node(client, node)
        await ready_node(client, node)


async def test_the_lease_lives_while_the_agent_runs_and_goes_after_it_stops(
    client: Client, node: str
) -> None:
    async with h.running_agent(client, node) as agent:
        lease = await get_lease(client, node)
        assert lease is not None
        assert lease.lease.spec.holder == node
        assert lease.lease.spec.ttl_seconds == 2
        assert lease.lease.spec.lease_id == agent.lease.lease_id
        await asyncio.sleep(3)  # longer than the TTL: kept alive
        assert await get_lease(client, node) is not None

    async def expired() -> bool:
        return await get_lease(client, node) is None

    await h.eventually(expired, what="the lease to expire", within=10)


async def test_a_lost_lease_is_taken_again(client: Client, node: str) -> None:
    async with h.running_agent(client, node) as agent:
        first = agent.lease.lease_id
        await client.revoke_lease(first)  # as if etcd had let it expire

        async def retaken() -> object_pb2.Object | None:
            # The agent writes the Lease, then learns its new id: wait for both.
            lease = await get_lease(client, node)
            if lease is None or lease.lease.spec.lease_id in (first, 0):
                return None
            held = agent.lease.held.is_set() and agent.lease.lease_id == lease.lease.spec.lease_id
            return lease if held else None

        lease = await h.eventually(retaken, what="a new lease the agent holds", within=10)
        assert lease.lease.spec.lease_id != first


async def test_a_twin_agent_on_another_machine_waits_and_touches_nothing(
    client: Client, docker: Any, node: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dora.agent")
    async with h.running_agent(client, node):
        await client.apply(h.bound("web.0", node))
        running = await h.phase_of(client, "web.0", "Running")
        async with h.running_agent(client, node, wait_ready=False,
                                   engine=h.AnotherMachine()) as twin:
            await asyncio.sleep(3)  # more than a TTL: the first agent keeps its lease
            assert not twin.lease.acquired.is_set()
            assert not twin.synced.is_set()
            assert "waiting for it to expire" in caplog.text
    # Both are gone now. The twin's engine is not the one that ran web.0, but the
    # Docker containers are labelled for the node: a new agent adopts them.
    async with h.running_agent(client, node, engine=h.AnotherMachine()):
        await h.phase_of(client, "web.0", "Running")
        [container] = h.node_containers(docker, node)
        assert container.id == running.container.status.docker_id


async def test_a_second_agent_on_the_same_engine_takes_over_and_the_first_stands_down(
    client: Client, docker: Any, node: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dora.agent")
    async with h.running_agent(client, node) as first:
        await client.apply(h.bound("web.0", node))
        running = await h.phase_of(client, "web.0", "Running")
        async with h.running_agent(client, node) as second:
            assert second.lease.held.is_set()

            async def stood_down() -> bool:
                await asyncio.sleep(0.05)
                return not first.lease.held.is_set()

            await h.eventually(stood_down, what="the first agent to notice", within=10)
            assert "was taken over" in caplog.text
            await asyncio.sleep(3)  # the first does not take it back
            assert not first.lease.held.is_set()
            lease = await get_lease(client, node)
            assert lease is not None and lease.lease.spec.lease_id == second.lease.lease_id
            [container] = h.node_containers(docker, node)
            assert container.id == running.container.status.docker_id
